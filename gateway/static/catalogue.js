// The catalogue page: films from GET /v1/movies, search (?q=), "Load more" (next_cursor).

import { ApiError, api } from './api.js';
import { formatDuration, startShell } from './shell.js';

const PAGE_SIZE = 24;

function movieCard(movie) {
  const item = document.createElement('li');
  const link = document.createElement('a');
  link.className = 'card';
  link.href = '/watch/' + encodeURIComponent(movie.id);
  if (movie.poster_url) {
    const img = document.createElement('img');
    img.className = 'card-poster';
    img.src = movie.poster_url;
    img.alt = '';
    img.loading = 'lazy';
    img.decoding = 'async';
    link.append(img);
  } else {
    const placeholder = document.createElement('span');
    placeholder.className = 'card-poster placeholder';
    placeholder.textContent = (movie.title || '?').slice(0, 1);
    link.append(placeholder);
  }
  const body = document.createElement('span');
  body.className = 'card-body';
  const title = document.createElement('span');
  title.className = 'card-title';
  title.textContent = movie.title;
  const meta = document.createElement('span');
  meta.className = 'card-meta';
  meta.textContent = [movie.year, formatDuration(movie.duration_s)].filter(Boolean).join(' · ');
  body.append(title, meta);
  link.append(body);
  item.append(link);
  return item;
}

class Catalogue {
  constructor() {
    this.grid = document.getElementById('movie-grid');
    this.status = document.getElementById('catalogue-status');
    this.more = document.getElementById('load-more');
    this.form = document.getElementById('search-form');
    this.search = document.getElementById('search');
    this.query = new URLSearchParams(location.search).get('q') || '';
    this.cursor = null;
    this.loading = false;
    this.search.value = this.query;
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.setQuery(this.search.value.trim());
    });
    this.more.addEventListener('click', () => this.load());
  }

  setQuery(query) {
    this.query = query;
    const url = new URL(location.href);
    if (query) url.searchParams.set('q', query); else url.searchParams.delete('q');
    history.replaceState(null, '', url);
    this.grid.replaceChildren();
    this.cursor = null;
    this.load();
  }

  async load() {
    if (this.loading) return;
    this.loading = true;
    this.more.disabled = true;
    this.setStatus(this.grid.children.length ? '' : 'Loading films…');
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (this.query) params.set('q', this.query);
    if (this.cursor) params.set('cursor', this.cursor);
    try {
      const page = await api('/v1/movies?' + params);
      this.grid.append(...page.items.map(movieCard));
      this.cursor = page.next_cursor;
      this.more.hidden = !this.cursor;
      if (!this.grid.children.length) {
        this.setStatus(this.query ? `No films match “${this.query}”.` : 'No films yet.');
      } else {
        this.setStatus('');
      }
    } catch (err) {
      const why = err instanceof ApiError ? err.message : 'Check your connection.';
      this.setStatus('Could not load films. ' + why, true);
      this.more.hidden = !this.cursor;
    } finally {
      this.loading = false;
      this.more.disabled = false;
    }
  }

  setStatus(text, isError = false) {
    this.status.textContent = text;
    this.status.classList.toggle('error', isError);
  }
}

await startShell();
new Catalogue().load();
