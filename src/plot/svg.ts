// What the plots share: fonts and layout constants, the color scales, and text made safe for
// XML and measured for layout.

export const FONT = "'DejaVu Sans', 'Liberation Sans', Arial, Helvetica, sans-serif";
export const FONT_SIZE = 12;
export const CHAR_W = 7.3; // a generous average advance at 12px, for layout only
export const PAD = 12;
export const TEXT = '#222';
export const MUTED = '#555';

export type RGB = [number, number, number];
// ColorBrewer RdBu (ends and quartiles) with pure white in the middle; Blues for sequential.
export const DIVERGING: RGB[] = [
  [33, 102, 172],
  [146, 197, 222],
  [255, 255, 255],
  [244, 165, 130],
  [178, 24, 43],
];
export const SEQUENTIAL: RGB[] = [
  [255, 255, 255],
  [198, 219, 239],
  [107, 174, 214],
  [33, 113, 181],
  [8, 48, 107],
];

/** The color at `t` in [0, 1] along evenly spaced stops. */
export function ramp(stops: RGB[], t: number): RGB {
  const x = Math.min(1, Math.max(0, t)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  const f = x - i;
  const [a, b] = [stops[i], stops[i + 1]];
  return [0, 1, 2].map((k) => Math.round(a[k] + (b[k] - a[k]) * f)) as RGB;
}

export const css = ([r, g, b]: RGB) => `rgb(${r},${g},${b})`;
export const luminance = ([r, g, b]: RGB) => (0.299 * r + 0.587 * g + 0.114 * b) / 255;
export const inkOn = (fill: RGB) => (luminance(fill) < 0.55 ? '#fff' : TEXT);

export const SHORT_ESCAPES: Record<string, string> = { '\b': '\\b', '\t': '\\t', '\n': '\\n', '\f': '\\f', '\r': '\\r' };

/**
 * Text that XML 1.0 accepts and a reader can see in any font: control characters (C0, DEL, C1),
 * lone surrogates and the non-characters U+FFFE/U+FFFF become JSON-style escapes ('\n' shows
 * as the two characters \n, U+0010 as \u0010).
 */
export function visibleText(s: string): string {
  return String(s).replace(
    /[\u0000-\u001f\u007f-\u009f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g,
    (ch) => SHORT_ESCAPES[ch] ?? `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** `visibleText`, then escaped for XML text and attribute values. */
export function escapeXml(s: string): string {
  return visibleText(s).replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[ch]!);
}

export const textWidth = (s: string, size = FONT_SIZE) => Array.from(visibleText(s)).length * CHAR_W * (size / FONT_SIZE);
export const r1 = (v: number) => Math.round(v * 10) / 10;

export function defaultFormat(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (!Number.isFinite(v)) return v > 0 ? '∞' : '-∞';
  const a = Math.abs(v);
  if (a === 0) return '0';
  if (a >= 1e4 || a < 1e-3) return v.toExponential(1).replace('e+', 'e');
  return String(Number(v.toPrecision(3)));
}
