// The watch page: POST /v1/playback/{movie} -> manifest_url -> hls.js (or the browser's
// own HLS player) in a <video>. Quality menu, data saver, "Ad" label, progress reports
// every 15 s, and the playback session ended when the page goes away.
// window.kushPlayer = {hls, video, state} is there for tests and for debugging.

import { ApiError, api } from './api.js';
import { AdLabel, AdSchedule, adPodsFromCues, adPodsFromDetails } from './ads.js';
import { AUTO, dataSaverCap, levelOptions, loadDataSaver, saveDataSaver } from './quality.js';
import { MobileMoney } from './momo.js';
import { formatDuration, startShell } from './shell.js';
import { estimateLine, usageLine } from './usage.js';

const PROGRESS_EVERY_MS = 15000;
const USAGE_EVERY_MS = 10000;
const NETWORK_RETRIES = 3;
const MEDIA_RECOVERIES = 2;

/** How each refusal of POST /v1/playback is put to the viewer (the message is the API's). */
const REFUSALS = {
  stream_limit: { title: 'Too many screens', upgrade: true, retry: true },
  not_entitled: { title: 'Not included in your plan', upgrade: true },
  geo_blocked: { title: 'Not available where you are' },
  age_restricted: { title: 'Age restricted' },
};

function formatMeta(movie) {
  const parts = [];
  if (movie.year) parts.push(String(movie.year));
  if (movie.duration_s) parts.push(formatDuration(movie.duration_s));
  if (movie.min_age) parts.push(movie.min_age + '+');
  if (movie.rating) parts.push(movie.rating);
  return parts.join(' · ');
}

class WatchPage {
  constructor(root, shell) {
    this.shell = shell;
    this.movieId = root.dataset.movieId;
    this.workerUrl = root.dataset.hlsWorkerUrl || '';
    this.video = document.getElementById('video');
    this.quality = document.getElementById('quality');
    this.dataSaver = document.getElementById('data-saver');
    this.settings = document.getElementById('player-settings');
    this.overlay = {
      box: document.getElementById('player-overlay'),
      title: document.getElementById('overlay-title'),
      message: document.getElementById('overlay-message'),
      action: document.getElementById('overlay-action'),
      link: document.getElementById('overlay-link'),
    };
    this.hls = null;
    this.ads = new AdSchedule();
    this.adLabel = new AdLabel(
      document.getElementById('ad-label'), document.getElementById('ad-remaining'));
    this.overlayAction = null;
    this.progressTimer = null;
    this.usageTimer = null;
    this.usage = document.getElementById('data-usage');
    this.lastReported = -1;
    this.networkRetries = 0;
    this.mediaRecoveries = 0;
    this.state = {
      phase: 'loading', // loading | signin | starting | playing | refused | error | ended
      movieId: this.movieId,
      sessionId: null,
      engine: null, // 'hls.js' | 'native'
      error: null, // {code, message} of the last refusal or failure
      level: AUTO, // the menu's choice: AUTO or an index of hls.levels
      dataSaver: loadDataSaver(shell.user ? shell.user.plan : 'free'),
      ad: null, // {id, remaining} while the playhead is in an ad pod
      serverDataSaver: false, // the session is a data-saver one (360p at most, fewer ads)
      usage: null, // the last /v1/me/usage answer
      adPods: [],
    };
    window.kushPlayer = { hls: null, video: this.video, state: this.state };
    // "Pay with mobile money": once paid, a refused or stopped film starts again
    this.momo = new MobileMoney(document.getElementById('momo'), {
      onSettled: (payment) => {
        if (payment.status === 'successful' && this.state.phase !== 'playing') location.reload();
      },
    });

    this.dataSaver.checked = this.state.dataSaver;
    this.overlay.action.addEventListener('click', () => this.overlayAction?.());
    this.quality.addEventListener('change', () => this.chooseLevel(Number(this.quality.value)));
    this.dataSaver.addEventListener('change', () => this.setDataSaver(this.dataSaver.checked));
    for (const event of ['timeupdate', 'seeked', 'seeking']) {
      this.video.addEventListener(event, () => this.updateAd());
    }
    this.video.addEventListener('playing', () => this.setPhase('playing'));
    this.video.addEventListener('pause', () => this.reportProgress());
    this.video.addEventListener('ended', () => this.reportProgress());
    window.addEventListener('pagehide', () => this.leave());
    window.addEventListener('pageshow', (event) => {
      if (event.persisted) location.reload(); // back from bfcache: its session was ended
    });
    shell.onChange(() => {
      this.leave();
      location.reload();
    });
  }

  setPhase(phase) {
    this.state.phase = phase;
    document.body.dataset.phase = phase;
  }

  // ------------------------------------------------------------ overlay

  showOverlay({ title, message, action = null, link = null }) {
    const { box, title: titleEl, message: messageEl, action: actionEl, link: linkEl } = this.overlay;
    titleEl.textContent = title;
    messageEl.textContent = message;
    actionEl.hidden = !action;
    this.overlayAction = action ? action.run : null;
    if (action) actionEl.textContent = action.label;
    linkEl.hidden = !link;
    if (link) {
      linkEl.textContent = link.label;
      linkEl.href = link.href;
    }
    box.hidden = false;
  }

  hideOverlay() {
    this.overlay.box.hidden = true;
    this.overlayAction = null;
  }

  fail(code, title, message, action = null, link = null) {
    this.state.error = { code, message };
    this.setPhase(code === 'signin' ? 'signin' : 'error');
    this.showOverlay({ title, message, action, link });
  }

  // ------------------------------------------------------------ start

  async start() {
    const movie = await this.loadMovie();
    if (!movie) return;
    if (!this.shell.user) {
      this.askToSignIn('Watching needs a Kush Films account. Free accounts can watch with ads.');
      return;
    }
    this.momo.start();
    const engine = this.pickEngine();
    if (!engine) return;
    this.setPhase('starting');
    let session;
    try {
      session = await api('/v1/playback/' + encodeURIComponent(this.movieId), { method: 'POST' });
    } catch (err) {
      this.refused(err);
      return;
    }
    this.state.sessionId = session.session_id;
    this.state.engine = engine;
    this.state.serverDataSaver = Boolean(session.data_saver);
    this.showUsage();
    this.usageTimer = setInterval(() => this.showUsage(), USAGE_EVERY_MS);
    if (engine === 'hls.js') this.attachHls(session.manifest_url);
    else this.attachNative(session.manifest_url);
    this.progressTimer = setInterval(() => {
      if (!this.video.paused) this.reportProgress();
    }, PROGRESS_EVERY_MS);
  }

  async loadMovie() {
    try {
      const movie = await api('/v1/movies/' + encodeURIComponent(this.movieId));
      document.getElementById('movie-title').textContent = movie.title;
      document.getElementById('movie-meta').textContent = formatMeta(movie);
      document.getElementById('movie-description').textContent = movie.description || '';
      document.title = movie.title + ' · Kush Films';
      if (movie.poster_url) this.video.poster = movie.poster_url;
      const estimate = estimateLine(movie.renditions);
      const estimateEl = document.getElementById('movie-estimate');
      estimateEl.textContent = estimate;
      estimateEl.hidden = !estimate;
      return movie;
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        this.fail('movie_not_found', 'Film not found', 'This film is not (or no longer) available.',
          null, { label: 'Back to films', href: '/' });
      } else {
        this.fail('network', 'Could not load this film',
          'Check your connection and try again.',
          { label: 'Try again', run: () => location.reload() });
      }
      return null;
    }
  }

  askToSignIn(message) {
    this.fail('signin', 'Sign in to watch', message,
      { label: 'Sign in', run: () => this.shell.askToSignIn() });
  }

  /** hls.js where Media Source Extensions exist, else the browser's own HLS (Safari). */
  pickEngine() {
    const Hls = window.Hls;
    if (Hls && Hls.isSupported()) return 'hls.js';
    const native = this.video.canPlayType('application/vnd.apple.mpegurl') !== '';
    if (native) {
      if (!Hls) console.warn('hls.js is missing; using the browser\'s own HLS player');
      return 'native';
    }
    if (!Hls) {
      this.fail('hlsjs_missing', 'The video player is missing',
        'This server has no copy of hls.js, the video player library, so films cannot play '
        + 'here yet. An operator can install it with scripts/vendor.sh (or set KUSH_HLSJS_URL).');
    } else {
      this.fail('unsupported', 'This browser cannot play films',
        'Update your browser (Chrome, Firefox, Safari or Samsung Internet) and try again.');
    }
    return null;
  }

  refused(err) {
    if (!(err instanceof ApiError)) {
      this.fail('network', 'Could not start the film', 'Check your connection and try again.',
        { label: 'Try again', run: () => location.reload() });
      return;
    }
    if (err.status === 401) {
      this.askToSignIn('Your sign-in has expired. Sign in again to watch.');
      return;
    }
    const refusal = REFUSALS[err.code];
    if (err.status === 403 && refusal) {
      const plan = this.shell.user ? this.shell.user.plan : 'free';
      const action = refusal.retry ? { label: 'Try again', run: () => location.reload() } : null;
      const link = refusal.upgrade && plan !== 'premium'
        ? { label: 'Upgrade', href: '/upgrade' } : { label: 'Back to films', href: '/' };
      this.fail(err.code, refusal.title, err.message, action, link);
      this.setPhase('refused');
      return;
    }
    const retry = err.status === 429 || err.status >= 500;
    this.fail(err.code, 'Could not start the film', err.message,
      retry ? { label: 'Try again', run: () => location.reload() } : null,
      { label: 'Back to films', href: '/' });
  }

  // ------------------------------------------------------------ engines

  attachHls(manifestUrl) {
    const Hls = window.Hls;
    const hls = new Hls({
      // The worker comes from a same-origin file (CSP has no blob: workers); with hls.js
      // loaded from elsewhere there is none, and transmuxing runs on the page.
      enableWorker: Boolean(this.workerUrl),
      workerPath: this.workerUrl || null,
      capLevelToPlayerSize: true, // no 1080p into a 360 px wide phone player in Auto
      maxBufferLength: 30,
      backBufferLength: 30, // phones have little memory
      // Ad pods are read from LEVEL_LOADED below; hls.js's own metadata text tracks would
      // load a data: URL that the page's CSP (media-src 'self' blob:) refuses.
      enableDateRangeMetadataCues: false,
      enableID3MetadataCues: false,
      enableEmsgMetadataCues: false,
    });
    this.hls = hls;
    window.kushPlayer.hls = hls;
    hls.on(Hls.Events.MANIFEST_PARSED, () => {
      this.buildQualityMenu();
      this.applyDataSaver();
      this.play();
    });
    const readPods = (_event, data) => {
      this.ads.update(adPodsFromDetails(data.details));
      this.state.adPods = this.ads.pods;
      this.updateAd();
    };
    hls.on(Hls.Events.LEVEL_LOADED, readPods);
    hls.on(Hls.Events.LEVEL_UPDATED, readPods);
    hls.on(Hls.Events.LEVEL_SWITCHED, () => this.updateAutoLabel());
    hls.on(Hls.Events.ERROR, (_event, data) => this.onHlsError(data));
    hls.loadSource(manifestUrl);
    hls.attachMedia(this.video);
  }

  attachNative(manifestUrl) {
    this.quality.disabled = true;
    this.dataSaver.disabled = true;
    this.settings.title = 'Your browser chooses the quality of this film.';
    if (!window.Hls) {
      const note = document.getElementById('player-note');
      note.textContent = 'The hls.js video player is missing on this server, so your browser\'s '
        + 'own player is used: no quality menu or data saver. An operator can install it '
        + 'with scripts/vendor.sh.';
      note.hidden = false;
    }
    // Native players expose EXT-X-DATERANGE as metadata cues; 'hidden' makes them load.
    this.video.textTracks.addEventListener('addtrack', (event) => {
      if (event.track.kind === 'metadata') event.track.mode = 'hidden';
    });
    this.video.addEventListener('error', () => this.fail('media', 'Playback failed',
      'The film could not be played. Try again in a moment.',
      { label: 'Try again', run: () => location.reload() }), { once: true });
    this.video.src = manifestUrl;
    this.play();
  }

  play() {
    this.hideOverlay();
    const attempt = this.video.play();
    if (attempt && attempt.catch) {
      attempt.catch((err) => {
        if (err && err.name === 'NotAllowedError') {
          // autoplay refused (no tap yet on this site): one big button to start
          this.showOverlay({ title: this.state.phase === 'starting' ? 'Ready' : 'Paused',
            message: '', action: { label: '▶ Play', run: () => this.play() } });
        }
      });
    }
  }

  onHlsError(data) {
    if (!data.fatal) return;
    const Hls = window.Hls;
    const status = data.response ? data.response.code : 0;
    if (data.type === Hls.ErrorTypes.NETWORK_ERROR) {
      if (status === 401 || status === 403) {
        this.stopHls();
        this.sessionStopped(data);
        return;
      }
      if (this.networkRetries < NETWORK_RETRIES) {
        this.networkRetries += 1;
        this.hls.startLoad();
        return;
      }
    } else if (data.type === Hls.ErrorTypes.MEDIA_ERROR && this.mediaRecoveries < MEDIA_RECOVERIES) {
      this.mediaRecoveries += 1;
      this.hls.recoverMediaError();
      return;
    }
    this.stopHls();
    this.fail('playback_failed', 'Playback failed',
      'The connection is too weak or was lost. Try again in a moment.',
      { label: 'Try again', run: () => location.reload() });
  }

  stopHls() {
    if (this.hls) this.hls.stopLoad();
  }

  /** A playlist or segment was refused mid-film: ask the gateway why (hls.js keeps only
   * the status), so a plan change reads as one rather than as a lost session. */
  async sessionStopped(data) {
    const url = (data.frag && data.frag.url) || (data.context && data.context.url) || data.url;
    let code = '';
    let message = '';
    if (url) {
      try {
        const body = await (await fetch(url, { credentials: 'omit' })).json();
        code = (body && body.error && body.error.code) || '';
        message = (body && body.error && body.error.message) || '';
      } catch {
        // offline or not JSON: the generic message below
      }
    }
    this.state.error = { code: code || 'session_ended', message };
    if (code === 'payment_not_confirmed') {
      this.fail('payment_not_confirmed', 'Payment not confirmed', message
        || 'Your mobile money payment was not confirmed, so the access it started has ended.',
        { label: 'Pay with mobile money', run: () => { this.hideOverlay(); this.momo.open(); } },
        { label: 'Start again', href: location.pathname });
      return;
    }
    if (code === 'plan_changed') {
      this.fail('plan_changed', 'Your plan changed', message
        || 'Your plan no longer includes this quality. Start the film again to continue.',
        { label: 'Start again', run: () => location.reload() },
        { label: 'See plans', href: '/upgrade' });
      return;
    }
    this.fail('session_ended', 'Playback stopped',
      'This playback session has ended (you signed out, or another screen took over).',
      { label: 'Start again', run: () => location.reload() });
  }

  // ------------------------------------------------------------ quality and data saver

  buildQualityMenu() {
    const options = levelOptions(this.hls.levels);
    const auto = new Option('Auto', String(AUTO));
    this.quality.replaceChildren(auto, ...options.map((o) => new Option(o.label, String(o.index))));
    this.quality.value = String(this.state.level);
    this.quality.disabled = options.length === 0;
    this.updateAutoLabel();
  }

  chooseLevel(index) {
    this.state.level = index;
    if (this.hls) this.hls.currentLevel = index; // AUTO (-1) hands the choice back to ABR
    this.updateAutoLabel();
  }

  setDataSaver(on) {
    this.state.dataSaver = on;
    saveDataSaver(on);
    this.applyDataSaver();
    // the account's setting too: the next session is capped by the gateway (360p, fewer ads)
    if (this.shell.user) {
      api('/v1/me', { method: 'PATCH', body: { data_saver: on } }).catch(() => {});
    }
  }

  /** "This film used 84 MB so far · 312 MB this month", refreshed while watching. */
  async showUsage() {
    try {
      this.state.usage = await api('/v1/me/usage');
    } catch {
      return; // best effort: the line keeps its last value
    }
    const saver = this.state.serverDataSaver ? ' · data saver on' : '';
    this.usage.textContent = usageLine(this.state.usage, this.movieId) + saver;
    this.usage.hidden = false;
  }

  /** Cap ABR at ≤ 480p; a manual pick above the cap goes back to Auto when it turns on. */
  applyDataSaver() {
    const hls = this.hls;
    if (!hls || !hls.levels.length) return;
    const cap = this.state.dataSaver ? dataSaverCap(hls.levels) : -1;
    hls.autoLevelCapping = cap;
    const chosen = hls.levels[this.state.level];
    if (cap >= 0 && chosen && chosen.height > hls.levels[cap].height) {
      this.quality.value = String(AUTO);
      this.chooseLevel(AUTO);
    }
    this.updateAutoLabel();
  }

  updateAutoLabel() {
    const auto = this.quality.options[0];
    if (!auto || !this.hls) return;
    const playing = this.hls.levels[this.hls.currentLevel];
    const now = this.state.level === AUTO && playing && playing.height ? ` · ${playing.height}p` : '';
    auto.textContent = 'Auto' + now;
  }

  // ------------------------------------------------------------ ads

  updateAd() {
    if (this.state.engine === 'native') {
      for (const track of Array.from(this.video.textTracks)) {
        if (track.kind === 'metadata') this.ads.update(adPodsFromCues(track.cues));
      }
      this.state.adPods = this.ads.pods;
    }
    const ad = this.ads.at(this.video.currentTime);
    this.state.ad = ad;
    this.adLabel.show(ad);
  }

  // ------------------------------------------------------------ progress and leaving

  reportProgress({ keepalive = false } = {}) {
    const position = this.video.currentTime;
    if (!this.state.sessionId || !Number.isFinite(position) || position <= 0) return;
    if (!keepalive && Math.abs(position - this.lastReported) < 1) return;
    this.lastReported = position;
    api('/v1/me/progress/' + encodeURIComponent(this.movieId), {
      method: 'PUT',
      body: { position_s: Math.round(position * 10) / 10 },
      keepalive,
    }).catch(() => {}); // best effort: the gateway also tracks position from segments
  }

  /** End the playback session (frees the stream slot); keepalive outlives the page. */
  leave() {
    const sessionId = this.state.sessionId;
    if (!sessionId) return;
    this.reportProgress({ keepalive: true });
    this.state.sessionId = null;
    clearInterval(this.progressTimer);
    clearInterval(this.usageTimer);
    this.setPhase('ended');
    api('/v1/playback/' + encodeURIComponent(sessionId), { method: 'DELETE', keepalive: true })
      .catch(() => {});
  }
}

const shell = await startShell();
const page = new WatchPage(document.getElementById('watch'), shell);
page.start();
