// Quality menu and data saver. The menu lists only the levels of the master playlist,
// which the gateway has already filtered for the viewer's plan. Data saver caps hls.js's
// automatic choice (ABR) at the lowest rungs: the highest level at or below 480p.

export const DATA_SAVER_MAX_HEIGHT = 480;
export const AUTO = -1;
const DATA_SAVER_KEY = 'kush.dataSaver';

/** Menu entries for hls.levels, best first: `{index, height, label}`. */
export function levelOptions(levels) {
  const options = levels.map((level, index) => ({
    index,
    height: level.height || 0,
    bitrate: level.bitrate || 0,
  }));
  options.sort((a, b) => b.height - a.height || b.bitrate - a.bitrate);
  const seen = new Map();
  for (const option of options) seen.set(option.height, (seen.get(option.height) || 0) + 1);
  return options.map(({ index, height, bitrate }) => {
    let label = height ? `${height}p` : `${Math.round(bitrate / 1000)} kb/s`;
    if (height && seen.get(height) > 1) label += ` (${Math.round(bitrate / 1000)} kb/s)`;
    return { index, height, label };
  });
}

/** The level index data saver caps ABR at: the highest ≤ maxHeight, else the lowest. */
export function dataSaverCap(levels, maxHeight = DATA_SAVER_MAX_HEIGHT) {
  let best = -1;
  let lowest = -1;
  levels.forEach((level, index) => {
    const height = level.height || 0;
    const rate = level.bitrate || 0;
    if (height <= maxHeight && (best < 0 || height > levels[best].height
        || (height === levels[best].height && rate > levels[best].bitrate))) {
      best = index;
    }
    if (lowest < 0 || height < (levels[lowest].height || 0)) lowest = index;
  });
  return best >= 0 ? best : lowest;
}

/** The saved data-saver choice of this device; when never set, ON for free viewers. */
export function loadDataSaver(plan, storage = globalThis.localStorage) {
  let saved = null;
  try {
    saved = storage ? storage.getItem(DATA_SAVER_KEY) : null;
  } catch {
    saved = null; // storage disabled (private mode): fall back to the default
  }
  if (saved === 'on') return true;
  if (saved === 'off') return false;
  return plan === 'free';
}

export function saveDataSaver(on, storage = globalThis.localStorage) {
  try {
    storage?.setItem(DATA_SAVER_KEY, on ? 'on' : 'off');
  } catch {
    // storage disabled: the choice lasts for this page only
  }
}
