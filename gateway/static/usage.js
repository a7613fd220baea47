// Data on the watch page: what this film used so far and this month's total (GET
// /v1/me/usage, fresh within seconds), and before playing, about how much the whole film
// takes at each rendition (GET /v1/movies/{id} `renditions[].megabytes`).

/** Bytes as the page says them: "840 KB", "84 MB", "1.2 GB" (powers of 1000). */
export function formatBytes(bytes) {
  const n = Math.max(0, Number(bytes) || 0);
  if (n < 1e6) return Math.round(n / 1e3) + ' KB';
  if (n < 1e9) return Math.round(n / 1e6) + ' MB';
  return (n / 1e9).toFixed(1) + ' GB';
}

/** "This film used 84 MB so far · 312 MB this month" from a /v1/me/usage answer. */
export function usageLine(usage, movieId) {
  const item = (usage.items || []).find((i) => i.movie_id === movieId);
  const film = item ? item.bytes : 0;
  return `This film used ${formatBytes(film)} so far · ${formatBytes(usage.total_bytes)} this month`;
}

/** "About 310 MB at 480p · 190 MB at 360p for the whole film": the renditions every plan
 * may play (480p and below), largest first, at most two. */
export function estimateLine(renditions, maxHeight = 480) {
  const video = (renditions || [])
    .filter((r) => r.height && r.height <= maxHeight)
    .sort((a, b) => b.height - a.height);
  if (!video.length) return '';
  const parts = video.slice(0, 2).map((r) => `${Math.round(r.megabytes)} MB at ${r.height}p`);
  return 'About ' + parts.join(' · ') + ' for the whole film';
}
