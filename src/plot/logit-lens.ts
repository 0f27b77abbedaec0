// The logit-lens table: each layer's top-k predicted tokens and their probabilities, as a
// standalone SVG document.
import { CHAR_W, FONT, FONT_SIZE, MUTED, PAD, type RGB, SEQUENTIAL, TEXT, css, escapeXml, inkOn, r1, ramp, textWidth, visibleText } from './svg.js';

export interface LogitLensRow {
  /** The row's label, e.g. '3' or 'h.3'. */
  layer: string;
  /** The top-k predicted tokens, best first (decoded text). */
  tokens: string[];
  /** Their probabilities, in [0, 1]. */
  probs: number[];
}

export interface LogitLensOptions {
  title?: string;
}

/** How a token is shown: spaces as '␣', control characters as JSON escapes, the empty token as '∅'. */
function tokenText(t: string): string {
  if (t === '') return '∅';
  return visibleText(t).replace(/ /g, '\u2423');
}

function truncate(s: string, maxChars: number): string {
  const cps = Array.from(s);
  return cps.length <= maxChars ? s : cps.slice(0, Math.max(1, maxChars - 1)).join('') + '…';
}

/**
 * A logit-lens table as a standalone SVG document: one row per layer, its top-k predicted
 * tokens left to right, each cell colored by its probability (white at 0, dark blue at 1, the
 * same scale on every row) and showing the token and the probability. Spaces show as '␣' and
 * control characters as JSON escapes (\n, \u0010); each cell's tooltip has the token as a JSON string.
 */
export function logitLensTable(rows: LogitLensRow[], options: LogitLensOptions = {}): string {
  if (!Array.isArray(rows) || rows.length === 0) throw new Error('logitLensTable: rows must be a non-empty array of { layer, tokens, probs }');
  rows.forEach((r, i) => {
    if (typeof r !== 'object' || r === null) throw new Error(`logitLensTable: row ${i} is not an object { layer, tokens, probs }`);
    if (!Array.isArray(r.tokens) || !Array.isArray(r.probs)) throw new Error(`logitLensTable: row ${i} needs arrays tokens and probs`);
    if (r.tokens.length !== r.probs.length)
      throw new Error(`logitLensTable: row ${i} has ${r.tokens.length} tokens and ${r.probs.length} probabilities`);
    if (r.tokens.length === 0) throw new Error(`logitLensTable: row ${i} has no tokens`);
    r.tokens.forEach((t, j) => {
      if (typeof t !== 'string') throw new Error(`logitLensTable: row ${i}, token ${j} is not a string`);
    });
    r.probs.forEach((p, j) => {
      if (typeof p !== 'number' || (!Number.isNaN(p) && !(p >= -1e-6 && p <= 1 + 1e-6)))
        throw new Error(`logitLensTable: row ${i}, probability ${j} is ${p}; probabilities must be numbers in [0, 1] (apply softmax to logits first)`);
    });
  });
  const k = Math.max(...rows.map((r) => r.tokens.length));
  const layers = rows.map((r) => String(r.layer));
  const title = options.title;

  const probFmt = (p: number) => (Number.isNaN(p) ? 'NaN' : p >= 0.995 ? '1.00' : p.toFixed(2).replace(/^0/, ''));
  const probW = 30;
  const maxTok = Math.max(...rows.flatMap((r) => r.tokens.map((t) => textWidth(tokenText(t)))));
  const cellW = Math.ceil(Math.min(220, Math.max(84, maxTok + probW + 18)));
  const maxChars = Math.max(2, Math.floor((cellW - probW - 18) / CHAR_W));
  const rowH = 28;
  const headH = 22;
  const layerW = Math.ceil(Math.max(textWidth('layer'), ...layers.map((l) => textWidth(l)))) + 16;
  const titleH = title ? 30 : 0;
  const x0 = PAD;
  const y0 = PAD + titleH;
  const tableW = layerW + k * cellW;
  const legendY = y0 + headH + rows.length * rowH + 14;
  const width = Math.ceil(Math.max(x0 + tableW + PAD, title ? 2 * PAD + textWidth(title, 15) : 0, x0 + 200 + PAD));
  const height = legendY + 10 + 16 + PAD;

  const out: string[] = [];
  out.push('<?xml version="1.0" encoding="UTF-8"?>');
  const label = title ? ` aria-label="${escapeXml(title)}"` : '';
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img"${label} font-family="${FONT}" font-size="${FONT_SIZE}">`,
  );
  if (title) out.push(`<title>${escapeXml(title)}</title>`);
  out.push(
    '<defs>',
    '<pattern id="torchsight-nan" patternUnits="userSpaceOnUse" width="6" height="6" patternTransform="rotate(45)">' +
      '<rect width="6" height="6" fill="rgb(217,217,217)"/><line x1="0" y1="0" x2="0" y2="6" stroke="rgb(140,140,140)" stroke-width="2"/></pattern>',
    '<linearGradient id="torchsight-bar-prob" x1="0" y1="0" x2="1" y2="0">' +
      SEQUENTIAL.map((c, i) => `<stop offset="${r1((i / (SEQUENTIAL.length - 1)) * 100)}%" stop-color="${css(c)}"/>`).join('') +
      '</linearGradient>',
    '</defs>',
  );
  out.push(`<rect class="background" x="0" y="0" width="${width}" height="${height}" fill="#fff"/>`);
  if (title) out.push(`<text class="title" x="${PAD}" y="${PAD + 16}" font-size="15" font-weight="bold" fill="${TEXT}">${escapeXml(title)}</text>`);

  // header
  out.push(`<g class="header" font-weight="bold" fill="${MUTED}">`);
  out.push(`<text x="${x0 + layerW - 8}" y="${y0 + headH / 2}" dy="0.35em" text-anchor="end">layer</text>`);
  for (let j = 0; j < k; j++) out.push(`<text x="${x0 + layerW + j * cellW + cellW / 2}" y="${y0 + headH / 2}" dy="0.35em" text-anchor="middle">top ${j + 1}</text>`);
  out.push('</g>');

  // rows
  out.push('<g class="cells" stroke="#fff" stroke-width="1">');
  const texts: string[] = [];
  rows.forEach((r, i) => {
    const y = y0 + headH + i * rowH;
    texts.push(`<text class="layer" x="${x0 + layerW - 8}" y="${y + rowH / 2}" dy="0.35em" text-anchor="end" fill="${TEXT}">${escapeXml(layers[i])}</text>`);
    r.tokens.forEach((t, j) => {
      const p = r.probs[j];
      const nan = Number.isNaN(p);
      const rgb = nan ? ([217, 217, 217] as RGB) : ramp(SEQUENTIAL, p);
      const x = x0 + layerW + j * cellW;
      const tip = `layer ${layers[i]}, top ${j + 1}: ${JSON.stringify(t)} p=${nan ? 'NaN' : Number(p.toPrecision(4))}`;
      out.push(
        `<rect class="cell" x="${x}" y="${y}" width="${cellW}" height="${rowH}" fill="${nan ? 'url(#torchsight-nan)' : css(rgb)}" data-row="${i}" data-col="${j}" data-value="${p}"><title>${escapeXml(tip)}</title></rect>`,
      );
      const ink = inkOn(rgb);
      texts.push(
        `<text class="token" x="${x + 7}" y="${y + rowH / 2}" dy="0.35em" fill="${ink}">${escapeXml(truncate(tokenText(t), maxChars))}</text>`,
        `<text class="prob" x="${x + cellW - 6}" y="${y + rowH / 2}" dy="0.35em" text-anchor="end" font-size="10" fill="${ink}">${probFmt(p)}</text>`,
      );
    });
  });
  out.push('</g>');
  out.push(`<g class="labels" pointer-events="none">`, ...texts, '</g>');

  // legend: the probability scale
  const lx = x0 + layerW;
  out.push(
    '<g class="colorbar">',
    `<text x="${lx - 8}" y="${legendY + 5}" dy="0.35em" text-anchor="end" font-size="11" fill="${MUTED}">p</text>`,
    `<rect class="colorbar-fill" x="${lx}" y="${legendY}" width="120" height="10" fill="url(#torchsight-bar-prob)" stroke="#999" stroke-width="1"/>`,
    `<text class="colorbar-min" x="${lx}" y="${legendY + 22}" font-size="11" text-anchor="middle" fill="${TEXT}">0</text>`,
    `<text class="colorbar-max" x="${lx + 120}" y="${legendY + 22}" font-size="11" text-anchor="middle" fill="${TEXT}">1</text>`,
    '</g>',
  );
  out.push('</svg>');
  return out.join('\n') + '\n';
}
