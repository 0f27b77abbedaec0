// The heatmap: a 2-D table of numbers (a layer x position patching sweep, an attention
// pattern) as a standalone SVG document.
import type { Tensor } from '../tensor.js';
import { DIVERGING, FONT, FONT_SIZE, MUTED, PAD, type RGB, SEQUENTIAL, TEXT, css, defaultFormat, escapeXml, inkOn, r1, ramp, textWidth } from './svg.js';

export interface HeatmapOptions {
  /** One label per row (default: the row index). For a patching sweep, the layers. */
  rowLabels?: string[];
  /** One label per column (default: the column index). For a patching sweep, the positions. */
  colLabels?: string[];
  title?: string;
  /** The name of the columns' axis, under the plot (e.g. 'position'). */
  xLabel?: string;
  /** The name of the rows' axis, left of the plot (e.g. 'layer'). */
  yLabel?: string;
  /**
   * 'diverging' (default): blue below `center`, white at it, red above; symmetric, so equal
   * distances from `center` get equal intensity. 'sequential': white at the minimum to dark
   * blue at the maximum.
   */
  colorScale?: 'diverging' | 'sequential';
  /** The white point of the diverging scale (default 0). */
  center?: number;
  /** Side of one cell in pixels (default 36). */
  cellSize?: number;
  /** Formats values for the cell annotations, the color bar and the tooltips. */
  valueFormat?: (v: number) => string;
  /** Prints each value in its cell (default: when cellSize is at least 30). */
  annotate?: boolean;
}

function tooltipFormat(v: number): string {
  if (!Number.isFinite(v)) return defaultFormat(v);
  return String(Number(v.toPrecision(6)));
}

function isTensorLike(v: unknown): v is Tensor {
  return typeof v === 'object' && v !== null && typeof (v as Tensor).toArray === 'function' && 'shape' in v && !Array.isArray(v);
}

/** The matrix of `values`, checked: 2-D, non-empty, rectangular, numbers only. */
function toMatrix(values: number[][] | Tensor): number[][] {
  let rows: unknown = values;
  if (isTensorLike(values)) {
    const shape = values.shape;
    if (shape.length !== 2) throw new Error(`heatmap: expected a 2-D tensor, got shape [${shape.join(', ')}]`);
    if (shape[0] === 0 || shape[1] === 0) throw new Error(`heatmap: the tensor is empty (shape [${shape.join(', ')}])`);
    rows = values.toArray();
  }
  if (!Array.isArray(rows) || rows.length === 0) throw new Error('heatmap: values must be a non-empty 2-D array (an array of rows of numbers) or a 2-D Tensor');
  const out: number[][] = [];
  rows.forEach((row: unknown, i: number) => {
    const cells = ArrayBuffer.isView(row) && !(row instanceof DataView) ? Array.from(row as unknown as ArrayLike<number | bigint>) : row;
    if (!Array.isArray(cells)) throw new Error(`heatmap: row ${i} is not an array (values must be 2-D: an array of rows of numbers)`);
    if (cells.length === 0) throw new Error(`heatmap: row ${i} is empty`);
    if (i > 0 && cells.length !== out[0].length)
      throw new Error(`heatmap: ragged input: row ${i} has ${cells.length} values, row 0 has ${out[0].length}`);
    out.push(
      cells.map((v: unknown, j: number) => {
        if (typeof v === 'number') return v;
        if (typeof v === 'boolean' || typeof v === 'bigint') return Number(v);
        throw new Error(`heatmap: the value at [${i}, ${j}] is not a number (${typeof v === 'string' ? JSON.stringify(v) : typeof v})`);
      }),
    );
  });
  return out;
}

function checkLabels(name: string, labels: unknown, n: number, what: string): string[] | undefined {
  if (labels === undefined) return undefined;
  if (!Array.isArray(labels)) throw new Error(`heatmap: ${name} must be an array of strings`);
  if (labels.length !== n) throw new Error(`heatmap: ${name} has ${labels.length} labels for ${n} ${what}`);
  return labels.map(String);
}

/**
 * A heatmap of a 2-D table of numbers as a standalone SVG document: one cell per value (rows
 * top to bottom, columns left to right), row and column labels, axis names, a color bar with
 * its minimum and maximum, and a tooltip (`<title>`) on every cell with its row, column and
 * value. NaN cells are hatched grey; +-Infinity take the scale's end colors. All text is escaped.
 */
export function heatmap(values: number[][] | Tensor, options: HeatmapOptions = {}): string {
  const data = toMatrix(values);
  const nRows = data.length;
  const nCols = data[0].length;
  const scale = options.colorScale ?? 'diverging';
  if (scale !== 'diverging' && scale !== 'sequential') throw new Error(`heatmap: colorScale must be 'diverging' or 'sequential', got ${JSON.stringify(scale)}`);
  const center = options.center ?? 0;
  if (typeof center !== 'number' || !Number.isFinite(center)) throw new Error(`heatmap: center must be a finite number, got ${center}`);
  const cell = options.cellSize ?? 36;
  if (typeof cell !== 'number' || !Number.isFinite(cell) || cell < 4) throw new Error(`heatmap: cellSize must be a number >= 4, got ${cell}`);
  const fmt = options.valueFormat ?? defaultFormat;
  const tipFmt = options.valueFormat ?? tooltipFormat;
  const annotate = options.annotate ?? cell >= 30;
  const rowLabels = checkLabels('rowLabels', options.rowLabels, nRows, 'rows') ?? data.map((_, i) => String(i));
  const colLabels = checkLabels('colLabels', options.colLabels, nCols, 'columns') ?? data[0].map((_, j) => String(j));

  // the scale's domain, from the finite values
  let lo = Infinity;
  let hi = -Infinity;
  for (const row of data)
    for (const v of row)
      if (Number.isFinite(v)) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
  const anyFinite = lo <= hi;
  let domain: [number, number];
  if (scale === 'diverging') {
    const m = anyFinite ? Math.max(Math.abs(hi - center), Math.abs(lo - center)) : 0;
    domain = [center - m, center + m];
  } else domain = anyFinite ? [lo, hi] : [NaN, NaN];
  const stops = scale === 'diverging' ? DIVERGING : SEQUENTIAL;
  const position = (v: number): number => {
    if (v === Infinity) return 1;
    if (v === -Infinity) return 0;
    const [a, b] = domain;
    return b > a ? (v - a) / (b - a) : scale === 'diverging' ? 0.5 : 0.5;
  };

  // layout
  const titleH = options.title ? 30 : 0;
  const yLabelW = options.yLabel ? 22 : 0;
  const rowLabelW = Math.ceil(Math.max(...rowLabels.map((l) => textWidth(l)))) + 8;
  const colLabelMax = Math.max(...colLabels.map((l) => textWidth(l)));
  const rotate = colLabelMax > cell - 4;
  const colLabelH = rotate ? Math.ceil(colLabelMax * Math.SQRT1_2) + 18 : 20;
  const xLabelH = options.xLabel ? 22 : 0;
  const gridX = PAD + yLabelW + rowLabelW;
  const gridY = PAD + titleH;
  const gridW = nCols * cell;
  const gridH = nRows * cell;
  const barX = gridX + gridW + 18;
  const barW = 14;
  const barH = Math.max(gridH, 96);
  const barLabels = [fmt(domain[1]), ...(scale === 'diverging' ? [fmt(center)] : []), fmt(domain[0])];
  const barLabelW = Math.ceil(Math.max(...barLabels.map((l) => textWidth(l)))) + 8;
  // rotated column labels hang down-left from their column, so they can reach past the grid's left edge
  const leftOverhang = rotate ? Math.max(0, colLabelMax * Math.SQRT1_2 - gridX + PAD - cell / 2) : 0;
  const shift = Math.ceil(leftOverhang);
  const width = Math.ceil(Math.max(barX + barW + 6 + barLabelW + PAD, options.title ? 2 * PAD + textWidth(options.title, 15) : 0)) + shift;
  const bottom = Math.max(gridY + gridH + colLabelH + xLabelH, gridY + barH + 6);
  const height = Math.ceil(bottom + PAD);

  const out: string[] = [];
  out.push('<?xml version="1.0" encoding="UTF-8"?>');
  const label = options.title ? ` aria-label="${escapeXml(options.title)}"` : '';
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img"${label} font-family="${FONT}" font-size="${FONT_SIZE}">`,
  );
  if (options.title) out.push(`<title>${escapeXml(options.title)}</title>`);
  out.push(
    '<defs>',
    '<pattern id="torchsight-nan" patternUnits="userSpaceOnUse" width="6" height="6" patternTransform="rotate(45)">' +
      '<rect width="6" height="6" fill="rgb(217,217,217)"/><line x1="0" y1="0" x2="0" y2="6" stroke="rgb(140,140,140)" stroke-width="2"/></pattern>',
    `<linearGradient id="torchsight-bar-${scale}" x1="0" y1="1" x2="0" y2="0">` +
      stops.map((c, i) => `<stop offset="${r1((i / (stops.length - 1)) * 100)}%" stop-color="${css(c)}"/>`).join('') +
      '</linearGradient>',
    '</defs>',
  );
  out.push(`<rect class="background" x="0" y="0" width="${width}" height="${height}" fill="#fff"/>`);
  out.push(`<g transform="translate(${shift},0)">`);
  if (options.title)
    out.push(`<text class="title" x="${PAD}" y="${PAD + 16}" font-size="15" font-weight="bold" fill="${TEXT}">${escapeXml(options.title)}</text>`);

  // cells
  const xName = options.xLabel ?? 'col';
  const yName = options.yLabel ?? 'row';
  out.push('<g class="cells" stroke="#fff" stroke-width="1">');
  const notes: string[] = [];
  data.forEach((row, i) =>
    row.forEach((v, j) => {
      const x = gridX + j * cell;
      const y = gridY + i * cell;
      const nan = Number.isNaN(v);
      const rgb = nan ? ([217, 217, 217] as RGB) : ramp(stops, position(v));
      const tip = `${yName} ${rowLabels[i]}, ${xName} ${colLabels[j]}: ${tipFmt(v)}`;
      out.push(
        `<rect class="cell" x="${x}" y="${y}" width="${cell}" height="${cell}" fill="${nan ? 'url(#torchsight-nan)' : css(rgb)}" data-row="${i}" data-col="${j}" data-value="${escapeXml(String(v))}"><title>${escapeXml(tip)}</title></rect>`,
      );
      if (annotate && !nan) {
        const fs = Math.max(7, Math.min(11, cell / 3.4));
        notes.push(`<text x="${x + cell / 2}" y="${y + cell / 2}" dy="0.35em" font-size="${r1(fs)}" fill="${inkOn(rgb)}">${escapeXml(fmt(v))}</text>`);
      }
    }),
  );
  out.push('</g>');
  out.push(`<rect class="frame" x="${gridX}" y="${gridY}" width="${gridW}" height="${gridH}" fill="none" stroke="#bbb" stroke-width="1"/>`);
  if (notes.length) out.push(`<g class="annotations" text-anchor="middle" pointer-events="none">`, ...notes, '</g>');

  // row labels, column labels, axis names
  out.push(`<g class="row-labels" text-anchor="end" fill="${TEXT}">`);
  rowLabels.forEach((l, i) => out.push(`<text x="${gridX - 6}" y="${gridY + i * cell + cell / 2}" dy="0.35em">${escapeXml(l)}</text>`));
  out.push('</g>');
  out.push(`<g class="col-labels" fill="${TEXT}">`);
  colLabels.forEach((l, j) => {
    const cx = gridX + j * cell + cell / 2;
    const y = gridY + gridH + 14;
    out.push(
      rotate
        ? `<text x="${cx}" y="${y}" text-anchor="end" transform="rotate(-45 ${cx} ${y})">${escapeXml(l)}</text>`
        : `<text x="${cx}" y="${y}" text-anchor="middle">${escapeXml(l)}</text>`,
    );
  });
  out.push('</g>');
  if (options.xLabel)
    out.push(`<text class="x-label" x="${gridX + gridW / 2}" y="${gridY + gridH + colLabelH + 14}" text-anchor="middle" fill="${MUTED}">${escapeXml(options.xLabel)}</text>`);
  if (options.yLabel) {
    const cx = PAD + 10;
    const cy = gridY + gridH / 2;
    out.push(`<text class="y-label" x="${cx}" y="${cy}" text-anchor="middle" transform="rotate(-90 ${cx} ${cy})" fill="${MUTED}">${escapeXml(options.yLabel)}</text>`);
  }

  // color bar: the scale's maximum at the top, its minimum at the bottom
  out.push(`<g class="colorbar">`);
  out.push(`<rect class="colorbar-fill" x="${barX}" y="${gridY}" width="${barW}" height="${barH}" fill="url(#torchsight-bar-${scale})" stroke="#999" stroke-width="1"/>`);
  const tick = (y: number, text: string, cls: string) =>
    out.push(
      `<line x1="${barX + barW}" y1="${y}" x2="${barX + barW + 3}" y2="${y}" stroke="#999"/>`,
      `<text class="${cls}" x="${barX + barW + 6}" y="${y}" dy="0.35em" font-size="11" fill="${TEXT}">${escapeXml(text)}</text>`,
    );
  tick(gridY, fmt(domain[1]), 'colorbar-max');
  if (scale === 'diverging') tick(gridY + barH / 2, fmt(center), 'colorbar-center');
  tick(gridY + barH, fmt(domain[0]), 'colorbar-min');
  out.push('</g>');
  out.push('</g>');
  out.push('</svg>');
  return out.join('\n') + '\n';
}
