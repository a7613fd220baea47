// The "Ad" label. Ad pods are marked in media playlists with
//   #EXT-X-DATERANGE:ID="...",CLASS="com.kushfilms.ad",START-DATE="...",DURATION=<s>
// fenced by #EXT-X-DISCONTINUITY (DESIGN.md). This module turns them into pods on the
// media timeline ({id, start, end} in seconds of video.currentTime) and says, for a
// playhead position, whether it is inside one and how many seconds of it are left.
// Pure functions over plain objects (hls.js LevelDetails / DateRange, or text-track
// cues), so tests can feed it synthetic data.

export const AD_CLASS = 'com.kushfilms.ad';

/** `ID="..."` of a raw EXT-X-DATERANGE attribute list. */
export function daterangeId(attributes) {
  const match = /(?:^|,)ID="([^"]*)"/.exec(attributes);
  return match ? match[1] : null;
}

/** Where a daterange starts on the media timeline, or NaN.
 *
 * 1. hls.js maps START-DATE through EXT-X-PROGRAM-DATE-TIME and exposes the result as
 *    `DateRange.startTime` (RFC 8216 §4.3.2.7: a playlist with EXT-X-DATERANGE must carry
 *    a PROGRAM-DATE-TIME). It is NaN when the playlist has none.
 * 2. Otherwise: the start of the segment the tag precedes. hls.js keeps every raw tag on
 *    the following fragment's `tagList`; a pod's DATERANGE sits right before its first
 *    segment (next to the EXT-X-DISCONTINUITY), so that is the pod's start.
 */
export function daterangeStart(range, details) {
  let start = NaN;
  try {
    start = range.startTime;
  } catch {
    start = NaN;
  }
  if (Number.isFinite(start)) return start;
  for (const fragment of details.fragments || []) {
    for (const [name, value] of fragment.tagList || []) {
      if (name === 'EXT-X-DATERANGE' && daterangeId(value) === range.id) return fragment.start;
    }
  }
  return NaN;
}

/** DURATION (or END-DATE − START-DATE), else PLANNED-DURATION, else NaN. */
export function daterangeDuration(range) {
  const duration = range.duration ?? range.plannedDuration;
  return typeof duration === 'number' && duration >= 0 ? duration : NaN;
}

/** The ad pods of one hls.js LevelDetails (`data.details` of LEVEL_LOADED/UPDATED). */
export function adPodsFromDetails(details) {
  const pods = [];
  for (const [id, range] of Object.entries(details.dateRanges || {})) {
    if (!range || range.class !== AD_CLASS) continue;
    const start = daterangeStart(range, details);
    const duration = daterangeDuration(range);
    if (Number.isFinite(start) && duration > 0) pods.push({ id, start, end: start + duration });
  }
  return pods.sort((a, b) => a.start - b.start);
}

/** The ad pods among a metadata text track's cues (native HLS players such as Safari
 * expose each DATERANGE attribute as a cue spanning the range, `value.key` naming it). */
export function adPodsFromCues(cues) {
  const pods = [];
  for (const cue of Array.from(cues || [])) {
    const value = cue.value || {};
    if (value.key === 'CLASS' && value.data === AD_CLASS && cue.endTime > cue.startTime) {
      pods.push({ id: cue.id || `${cue.startTime}`, start: cue.startTime, end: cue.endTime });
    }
  }
  return pods.sort((a, b) => a.start - b.start);
}

/** The pod the playhead is in: `{id, remaining}` (whole seconds, rounded up) or null. */
export function adAt(pods, time) {
  for (const pod of pods) {
    if (time >= pod.start && time < pod.end) {
      return { id: pod.id, remaining: Math.max(1, Math.ceil(pod.end - time - 1e-6)) };
    }
  }
  return null;
}

/** Every pod seen so far, by id: the same pods sit at the same positions in every
 * rendition of a session, so the latest playlist's view of a pod replaces the older. */
export class AdSchedule {
  constructor() {
    this.byId = new Map();
  }

  update(pods) {
    for (const pod of pods) this.byId.set(pod.id, pod);
  }

  get pods() {
    return [...this.byId.values()].sort((a, b) => a.start - b.start);
  }

  at(time) {
    return adAt(this.pods, time);
  }
}

/** The label on the player: shown with a countdown inside a pod, hidden outside. */
export class AdLabel {
  constructor(element, remainingElement) {
    this.element = element;
    this.remainingElement = remainingElement;
    this.current = null;
  }

  show(ad) {
    this.current = ad;
    this.element.hidden = !ad;
    this.element.dataset.remaining = ad ? String(ad.remaining) : '';
    if (ad) this.remainingElement.textContent = String(ad.remaining);
  }
}
