// torchsight/plot: the SVG it writes (well-formed XML, one cell per value, labels escaped, the
// scale's colors, NaN cells, bad input) and what headless Chromium actually draws from it (real
// pixels, read back with the small PNG decoder below).
import { describe, expect, it, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { childEnv } from './helpers.js';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync, inflateSync } from 'node:zlib';
import { pathToFileURL } from 'node:url';
import { heatmap, logitLensTable, toHtml, writePlot } from '../src/plot.js';
import { Tensor } from '../src/tensor.js';

const TMP = mkdtempSync(join(tmpdir(), 'torchsight-plot-'));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));

// ---------------------------------------------------------------------------------------------
// A small XML well-formedness check that also returns the element tree.

interface El {
  name: string;
  attrs: Record<string, string>;
  children: (El | string)[];
  parent?: El;
}

const ENTITY = /&(?:amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);/y;
const FORBIDDEN = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function unescapeXml(s: string, where: string): string {
  if (FORBIDDEN.test(s)) throw new Error(`XML: a character XML 1.0 forbids in ${where}: ${JSON.stringify(s)}`);
  for (let i = s.indexOf('&'); i >= 0; i = s.indexOf('&', i + 1)) {
    ENTITY.lastIndex = i;
    if (!ENTITY.test(s)) throw new Error(`XML: a bare '&' in ${where}: ${JSON.stringify(s)}`);
  }
  return s.replace(/&(amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);/g, (_, e: string) =>
    e[0] === '#'
      ? String.fromCodePoint(e[1] === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10))
      : ({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" } as Record<string, string>)[e],
  );
}

/** Parses `xml` (an XML declaration allowed first), throwing on anything not well-formed. */
function parseXml(xml: string): El {
  let s = xml.replace(/^<\?xml [^?]*\?>/, '');
  const token = /<!--[\s\S]*?-->|<\/([A-Za-z_][\w:.-]*)\s*>|<([A-Za-z_][\w:.-]*)((?:\s+[A-Za-z_][\w:.-]*\s*=\s*(?:"[^"<]*"|'[^'<]*'))*)\s*(\/?)>|([^<]+)|([\s\S])/y;
  const attr = /\s+([A-Za-z_][\w:.-]*)\s*=\s*(?:"([^"<]*)"|'([^'<]*)')/g;
  const root: El = { name: '#document', attrs: {}, children: [] };
  const stack: El[] = [root];
  let m: RegExpExecArray | null;
  while (token.lastIndex < s.length && (m = token.exec(s))) {
    const top = stack[stack.length - 1];
    if (m[1]) {
      if (top.name !== m[1]) throw new Error(`XML: </${m[1]}> closes <${top.name}>`);
      stack.pop();
    } else if (m[2]) {
      const el: El = { name: m[2], attrs: {}, children: [], parent: top };
      for (const a of m[3].matchAll(attr)) {
        if (a[1] in el.attrs) throw new Error(`XML: duplicate attribute ${a[1]} on <${m[2]}>`);
        el.attrs[a[1]] = unescapeXml(a[2] ?? a[3], `attribute ${a[1]} of <${m[2]}>`);
      }
      if (top === root && root.children.some((c) => typeof c !== 'string')) throw new Error('XML: more than one root element');
      top.children.push(el);
      if (!m[4]) stack.push(el);
    } else if (m[5] !== undefined) {
      if (top === root && m[5].trim()) throw new Error(`XML: text outside the root: ${JSON.stringify(m[5].slice(0, 40))}`);
      top.children.push(unescapeXml(m[5], `the text of <${top.name}>`));
    } else if (m[6] !== undefined) {
      throw new Error(`XML: not well-formed at offset ${token.lastIndex - 1}: ${JSON.stringify(s.slice(token.lastIndex - 1, token.lastIndex + 40))}`);
    }
  }
  if (stack.length !== 1) throw new Error(`XML: <${stack[stack.length - 1].name}> is never closed`);
  const els = root.children.filter((c): c is El => typeof c !== 'string');
  if (els.length !== 1) throw new Error('XML: no root element');
  return els[0];
}

function all(el: El, pred: (e: El) => boolean, out: El[] = []): El[] {
  if (pred(el)) out.push(el);
  for (const c of el.children) if (typeof c !== 'string') all(c, pred, out);
  return out;
}
const byClass = (root: El, cls: string) => all(root, (e) => (e.attrs.class ?? '').split(' ').includes(cls));
const text = (el: El): string => el.children.map((c) => (typeof c === 'string' ? c : c.name === 'title' ? '' : text(c))).join('');
const texts = (root: El) => all(root, (e) => e.name === 'text').map(text);
const tooltip = (el: El) => text(el.children.find((c): c is El => typeof c !== 'string' && c.name === 'title')!);
const cellAt = (root: El, i: number, j: number) => byClass(root, 'cell').find((c) => c.attrs['data-row'] === String(i) && c.attrs['data-col'] === String(j))!;

/** The center of a rect in the SVG's coordinates (its ancestors' translate()s applied). */
function centerOf(el: El): [number, number] {
  let x = Number(el.attrs.x) + Number(el.attrs.width) / 2;
  let y = Number(el.attrs.y) + Number(el.attrs.height) / 2;
  for (let p = el.parent; p; p = p.parent) {
    const t = /translate\(([-\d.]+)[ ,]+([-\d.]+)\)/.exec(p.attrs.transform ?? '');
    if (t) {
      x += Number(t[1]);
      y += Number(t[2]);
    }
  }
  return [x, y];
}

const RED: RGB = [178, 24, 43]; // the diverging scale's maximum
const BLUE: RGB = [33, 102, 172]; // its minimum
const DARK_BLUE: RGB = [8, 48, 107]; // the sequential scale's maximum
const WHITE: RGB = [255, 255, 255];
type RGB = [number, number, number];
const rgb = (c: RGB) => `rgb(${c.join(',')})`;

// ---------------------------------------------------------------------------------------------
// A small PNG decoder: 8-bit RGB and RGBA, not interlaced, all five row filters.

interface Png {
  width: number;
  height: number;
  channels: number;
  pixels: Uint8Array;
}

function decodePng(buf: Buffer): Png {
  const SIG = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (buf.length < 8 || SIG.some((b, i) => buf[i] !== b)) throw new Error('PNG: bad signature');
  let off = 8;
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat: Buffer[] = [];
  while (off + 12 <= buf.length) {
    const len = buf.readUInt32BE(off);
    const type = buf.toString('latin1', off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    off += 12 + len;
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      const [depth, colorType, , , interlace] = data.subarray(8, 13);
      if (depth !== 8 || (colorType !== 2 && colorType !== 6) || interlace !== 0)
        throw new Error(`PNG: only 8-bit RGB/RGBA, not interlaced (got depth ${depth}, color type ${colorType}, interlace ${interlace})`);
      channels = colorType === 6 ? 4 : 3;
    } else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
  }
  if (!channels || !idat.length) throw new Error('PNG: no IHDR or IDAT');
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  if (raw.length < height * (stride + 1)) throw new Error(`PNG: ${raw.length} bytes of image data, expected ${height * (stride + 1)}`);
  const px = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = y * stride;
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? px[row + x - channels] : 0; // left
      const b = y > 0 ? px[row - stride + x] : 0; // up
      const c = x >= channels && y > 0 ? px[row - stride + x - channels] : 0; // up-left
      let pred: number;
      if (filter === 0) pred = 0;
      else if (filter === 1) pred = a;
      else if (filter === 2) pred = b;
      else if (filter === 3) pred = (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c;
        const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
        pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      } else throw new Error(`PNG: unknown filter type ${filter} on row ${y}`);
      px[row + x] = (src[x] + pred) & 0xff;
    }
  }
  return { width, height, channels, pixels: px };
}

function pixel(png: Png, x: number, y: number): RGB {
  const [xi, yi] = [Math.round(x), Math.round(y)];
  if (xi < 0 || yi < 0 || xi >= png.width || yi >= png.height) throw new Error(`pixel (${xi}, ${yi}) is outside the ${png.width}x${png.height} image`);
  const i = (yi * png.width + xi) * png.channels;
  return [png.pixels[i], png.pixels[i + 1], png.pixels[i + 2]];
}

/** An encoder for the decoder's own test: row y uses filter y % 5. */
function encodePng(width: number, height: number, channels: 3 | 4, px: Uint8Array): Buffer {
  const stride = width * channels;
  const raw = Buffer.alloc(height * (stride + 1));
  for (let y = 0; y < height; y++) {
    const f = y % 5;
    raw[y * (stride + 1)] = f;
    for (let x = 0; x < stride; x++) {
      const cur = px[y * stride + x];
      const a = x >= channels ? px[y * stride + x - channels] : 0;
      const b = y > 0 ? px[(y - 1) * stride + x] : 0;
      const c = x >= channels && y > 0 ? px[(y - 1) * stride + x - channels] : 0;
      const p = a + b - c;
      const paeth = Math.abs(p - a) <= Math.abs(p - b) && Math.abs(p - a) <= Math.abs(p - c) ? a : Math.abs(p - b) <= Math.abs(p - c) ? b : c;
      const pred = [0, a, b, (a + b) >> 1, paeth][f];
      raw[y * (stride + 1) + 1 + x] = (cur - pred) & 0xff;
    }
  }
  const chunk = (type: string, data: Buffer) => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(data.length, 0);
    head.write(type, 4, 'latin1');
    return Buffer.concat([head, data, Buffer.alloc(4)]); // the decoder does not check CRCs
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, channels === 4 ? 6 : 2, 0, 0, 0], 8);
  const z = deflateSync(raw);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', z.subarray(0, 7)), // split across two IDAT chunks
    chunk('IDAT', z.subarray(7)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

const near = (got: RGB, want: RGB, tol = 10) => got.every((v, k) => Math.abs(v - want[k]) <= tol);
const redish = ([r, g, b]: RGB) => r > 140 && r - g > 80 && r - b > 80;
const blueish = ([r, g, b]: RGB) => b > 120 && b - r > 60 && b > g + 20;
const whiteish = ([r, g, b]: RGB) => r >= 250 && g >= 250 && b >= 250;
const greyish = ([r, g, b]: RGB) => Math.max(r, g, b) - Math.min(r, g, b) <= 12 && r > 90 && r < 240;

// ---------------------------------------------------------------------------------------------

describe('heatmap', () => {
  const sweep = [
    [0.1, -0.2, 0.3, 0.0],
    [0.5, 1.5, -0.4, 0.2],
    [-2.0, 0.0, 0.25, 0.75],
  ];

  it('is a well-formed SVG document with one cell per value, labels, axis names, a title and tooltips', () => {
    const svg = heatmap(sweep, { rowLabels: ['L0', 'L1', 'L2'], colLabels: ['p5', 'p6', 'p7', 'p8'], title: 'sweep', xLabel: 'position', yLabel: 'layer' });
    expect(svg.startsWith('<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    const root = parseXml(svg);
    expect(root.name).toBe('svg');
    expect(Number(root.attrs.width)).toBeGreaterThan(4 * 36);
    expect(byClass(root, 'cell')).toHaveLength(12);
    expect(svg.match(/<rect class="cell"/g)).toHaveLength(12);
    const t = texts(root);
    for (const l of ['L0', 'L1', 'L2', 'p5', 'p6', 'p7', 'p8', 'sweep', 'position', 'layer']) expect(t).toContain(l);
    // cells in order: row i at the i-th row from the top, column j at the j-th from the left
    const [x00, y00] = centerOf(cellAt(root, 0, 0));
    const [x23, y23] = centerOf(cellAt(root, 2, 3));
    expect(x23 - x00).toBe(3 * 36);
    expect(y23 - y00).toBe(2 * 36);
    expect(tooltip(cellAt(root, 1, 2))).toBe('layer L1, position p7: -0.4');
    expect(tooltip(cellAt(root, 0, 0))).toBe('layer L0, position p5: 0.1');
    expect(cellAt(root, 2, 0).attrs['data-value']).toBe('-2');
    // the color bar and its labels: a symmetric diverging domain around 0
    expect(byClass(root, 'colorbar-fill')).toHaveLength(1);
    expect(text(byClass(root, 'colorbar-max')[0])).toBe('2');
    expect(text(byClass(root, 'colorbar-center')[0])).toBe('0');
    expect(text(byClass(root, 'colorbar-min')[0])).toBe('-2');
    // default labels are the indices
    const plain = parseXml(heatmap([[1, 2, 3]]));
    expect(texts(plain)).toEqual(expect.arrayContaining(['0', '1', '2']));
    expect(tooltip(cellAt(plain, 0, 2))).toBe('row 0, col 2: 3');
  });

  it('escapes every text and shows control characters', () => {
    const nasty = '<b>&"x\'</b>';
    const svg = heatmap([[1, 2]], { rowLabels: [nasty], colLabels: ['a\nb', 'tab\there\u0001'], title: 'T & <U>', xLabel: '"x"', yLabel: "y'" });
    expect(svg).not.toContain('<b>');
    expect(svg).not.toContain('<U>');
    expect(svg).not.toMatch(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/);
    const root = parseXml(svg);
    const t = texts(root);
    expect(t).toContain(nasty);
    expect(t).toContain('a\\nb');
    expect(t).toContain('tab\\there\\u0001');
    expect(t).toContain('T & <U>');
    expect(t).toContain('"x"');
    expect(t).toContain("y'");
    expect(root.attrs['aria-label']).toBe('T & <U>');
    expect(tooltip(cellAt(root, 0, 1))).toBe(`y' ${nasty}, "x" tab\\there\\u0001: 2`);
    // lone surrogates would make the document invalid
    expect(() => parseXml(heatmap([[1]], { rowLabels: ['\ud800x'] }))).not.toThrow();
  });

  it('diverging: blue at the minimum, white at the center, red at the maximum', () => {
    const root = parseXml(heatmap([[-3, 0, 3, 1.5]]));
    expect(cellAt(root, 0, 0).attrs.fill).toBe(rgb(BLUE));
    expect(cellAt(root, 0, 1).attrs.fill).toBe(rgb(WHITE));
    expect(cellAt(root, 0, 2).attrs.fill).toBe(rgb(RED));
    const [r, g, b] = /rgb\((\d+),(\d+),(\d+)\)/.exec(cellAt(root, 0, 3).attrs.fill)!.slice(1).map(Number);
    expect(r).toBeGreaterThan(b); // half way to red
    expect(g).toBeLessThan(255);
    // symmetric: the farther side sets the extent; the nearer end is lighter than the scale's end
    const asym = parseXml(heatmap([[-1, 4]]));
    expect(cellAt(asym, 0, 1).attrs.fill).toBe(rgb(RED));
    expect(cellAt(asym, 0, 0).attrs.fill).not.toBe(rgb(BLUE));
    expect(text(byClass(asym, 'colorbar-min')[0])).toBe('-4');
    // another center
    const c = parseXml(heatmap([[1, 2, 5]], { center: 2 }));
    expect(cellAt(c, 0, 1).attrs.fill).toBe(rgb(WHITE));
    expect(cellAt(c, 0, 2).attrs.fill).toBe(rgb(RED));
    expect(text(byClass(c, 'colorbar-center')[0])).toBe('2');
    expect(text(byClass(c, 'colorbar-min')[0])).toBe('-1');
  });

  it('sequential: white at the minimum, dark blue at the maximum', () => {
    const root = parseXml(heatmap([[-6.5, -5], [-4, -2.5]], { colorScale: 'sequential' }));
    expect(cellAt(root, 0, 0).attrs.fill).toBe(rgb(WHITE));
    expect(cellAt(root, 1, 1).attrs.fill).toBe(rgb(DARK_BLUE));
    expect(text(byClass(root, 'colorbar-max')[0])).toBe('-2.5');
    expect(text(byClass(root, 'colorbar-min')[0])).toBe('-6.5');
    expect(byClass(root, 'colorbar-center')).toHaveLength(0);
  });

  it('draws NaN hatched grey, keeps it out of the scale, and gives infinities the end colors', () => {
    const svg = heatmap([[NaN, 1], [-1, Infinity], [-Infinity, 0.5]]);
    const root = parseXml(svg);
    expect(byClass(root, 'cell')).toHaveLength(6);
    expect(cellAt(root, 0, 0).attrs.fill).toBe('url(#torchsight-nan)');
    expect(all(root, (e) => e.name === 'pattern' && e.attrs.id === 'torchsight-nan')).toHaveLength(1);
    expect(tooltip(cellAt(root, 0, 0))).toBe('row 0, col 0: NaN');
    expect(cellAt(root, 0, 1).attrs.fill).toBe(rgb(RED));
    expect(cellAt(root, 1, 0).attrs.fill).toBe(rgb(BLUE));
    expect(cellAt(root, 1, 1).attrs.fill).toBe(rgb(RED));
    expect(cellAt(root, 2, 0).attrs.fill).toBe(rgb(BLUE));
    expect(text(byClass(root, 'colorbar-max')[0])).toBe('1');
    // no annotation on the NaN cell; all NaN still draws
    expect(texts(root)).not.toContain('NaN');
    expect(byClass(parseXml(heatmap([[NaN, NaN]])), 'cell')).toHaveLength(2);
  });

  it('annotates cells with valueFormat, and not when told not to', () => {
    const fmt = (v: number) => `${(v * 100).toFixed(0)}%`;
    const on = parseXml(heatmap([[0.25, -0.5]], { valueFormat: fmt, annotate: true }));
    expect(byClass(on, 'annotations')).toHaveLength(1);
    expect(texts(byClass(on, 'annotations')[0])).toEqual(['25%', '-50%']);
    expect(tooltip(cellAt(on, 0, 0))).toBe('row 0, col 0: 25%');
    expect(text(byClass(on, 'colorbar-max')[0])).toBe('50%');
    const off = parseXml(heatmap([[0.25, -0.5]], { annotate: false }));
    expect(byClass(off, 'annotations')).toHaveLength(0);
    // small cells default to no annotations
    expect(byClass(parseXml(heatmap([[1, 2]], { cellSize: 12 })), 'annotations')).toHaveLength(0);
  });

  it('takes a 2-D Tensor', () => {
    const t = Tensor.from([[1, 2, 3], [4, 5, 6]]);
    expect(heatmap(t, { title: 'x' })).toBe(heatmap([[1, 2, 3], [4, 5, 6]], { title: 'x' }));
    expect(byClass(parseXml(heatmap(Tensor.from([[1, 2], [3, 4]], { dtype: 'float16' }))), 'cell')).toHaveLength(4);
    expect(() => heatmap(Tensor.from([1, 2, 3]))).toThrow('heatmap: expected a 2-D tensor, got shape [3]');
    expect(() => heatmap(Tensor.from([[[1]]]))).toThrow('heatmap: expected a 2-D tensor, got shape [1, 1, 1]');
    expect(() => heatmap(Tensor.from([], { shape: [0, 3] }))).toThrow('heatmap: the tensor is empty');
  });

  it('rejects empty, ragged and non-numeric input with a clear error', () => {
    expect(() => heatmap([])).toThrow('heatmap: values must be a non-empty 2-D array');
    expect(() => heatmap([[]])).toThrow('heatmap: row 0 is empty');
    expect(() => heatmap([[1, 2], [3]])).toThrow('heatmap: ragged input: row 1 has 1 values, row 0 has 2');
    expect(() => heatmap([1, 2] as any)).toThrow('heatmap: row 0 is not an array');
    expect(() => heatmap([[1, '2']] as any)).toThrow('heatmap: the value at [0, 1] is not a number ("2")');
    expect(() => heatmap([[1, null]] as any)).toThrow('heatmap: the value at [0, 1] is not a number (object)');
    expect(() => heatmap('x' as any)).toThrow('heatmap: values must be a non-empty 2-D array');
    expect(() => heatmap([[1, 2]], { rowLabels: ['a', 'b'] })).toThrow('heatmap: rowLabels has 2 labels for 1 rows');
    expect(() => heatmap([[1, 2]], { colLabels: ['a'] })).toThrow('heatmap: colLabels has 1 labels for 2 columns');
    expect(() => heatmap([[1]], { colorScale: 'rainbow' as any })).toThrow("colorScale must be 'diverging' or 'sequential'");
    expect(() => heatmap([[1]], { center: NaN })).toThrow('center must be a finite number');
    expect(() => heatmap([[1]], { cellSize: 0 })).toThrow('cellSize must be a number >= 4');
  });
});

describe('logitLensTable', () => {
  const rows = [
    { layer: '0', tokens: [' Paris', '<eos>', 'a\nb'], probs: [1, 0.5, 0] },
    { layer: '1 & "2"', tokens: ['', '\u0010', 'x'], probs: [0.25, NaN, 0.125] },
  ];

  it('draws one colored cell per token, escaped, with visible whitespace and controls', () => {
    const svg = logitLensTable(rows, { title: 'lens <test>' });
    const root = parseXml(svg);
    expect(byClass(root, 'cell')).toHaveLength(6);
    expect(svg).not.toContain('<eos>');
    const tokens = byClass(root, 'token').map(text);
    expect(tokens).toEqual(['␣Paris', '<eos>', 'a\\nb', '∅', '\\u0010', 'x']);
    expect(byClass(root, 'prob').map(text)).toEqual(['1.00', '.50', '.00', '.25', 'NaN', '.13']);
    expect(texts(root)).toEqual(expect.arrayContaining(['lens <test>', 'layer', 'top 1', 'top 3', '0', '1 & "2"']));
    expect(cellAt(root, 0, 0).attrs.fill).toBe(rgb(DARK_BLUE));
    expect(cellAt(root, 0, 2).attrs.fill).toBe(rgb(WHITE));
    expect(cellAt(root, 1, 1).attrs.fill).toBe('url(#torchsight-nan)');
    expect(tooltip(cellAt(root, 0, 2))).toBe('layer 0, top 3: "a\\nb" p=0');
    expect(tooltip(cellAt(root, 1, 1))).toBe('layer 1 & "2", top 2: "\\u0010" p=NaN');
    // rows of different k
    expect(byClass(parseXml(logitLensTable([{ layer: 'a', tokens: ['x'], probs: [0.1] }, { layer: 'b', tokens: ['y', 'z'], probs: [0.2, 0.3] }])), 'cell')).toHaveLength(3);
    // long tokens are cut, in full in the tooltip
    const long = parseXml(logitLensTable([{ layer: '0', tokens: ['x'.repeat(200)], probs: [0.5] }]));
    expect(text(byClass(long, 'token')[0]).endsWith('…')).toBe(true);
    expect(tooltip(cellAt(long, 0, 0))).toContain('x'.repeat(200));
  });

  it('rejects bad rows', () => {
    expect(() => logitLensTable([])).toThrow('logitLensTable: rows must be a non-empty array');
    expect(() => logitLensTable([{ layer: '0', tokens: ['a', 'b'], probs: [0.5] }])).toThrow('row 0 has 2 tokens and 1 probabilities');
    expect(() => logitLensTable([{ layer: '0', tokens: [], probs: [] }])).toThrow('row 0 has no tokens');
    expect(() => logitLensTable([{ layer: '0', tokens: ['a'], probs: [3.2] }])).toThrow('probabilities must be numbers in [0, 1]');
    expect(() => logitLensTable([{ layer: '0', tokens: [7 as any], probs: [0.1] }])).toThrow('row 0, token 0 is not a string');
  });
});

describe('toHtml and writePlot', () => {
  it('wraps the SVG in a minimal page', () => {
    const svg = heatmap([[1, 2]], { title: 'a < b' });
    const html = toHtml(svg);
    expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
    expect(html).toContain('<title>a &lt; b</title>');
    expect(html).not.toContain('<?xml');
    expect(html).toContain(svg.replace(/^<\?xml[^>]*\?>\n/, '').trimEnd());
    expect(toHtml(svg, 'mine & yours')).toContain('<title>mine &amp; yours</title>');
    expect(toHtml(heatmap([[1]]))).toContain('<title>torchsight plot</title>');
    expect(() => toHtml('hello')).toThrow('toHtml: expected an SVG document');
  });

  it('writes .svg and .html, creating folders', () => {
    const svg = heatmap([[1, 2]]);
    const a = join(TMP, 'x', 'y', 'p.svg');
    expect(writePlot(a, svg)).toBe(a);
    expect(readFileSync(a, 'utf8')).toBe(svg);
    const b = join(TMP, 'z', 'p.html');
    writePlot(b, svg);
    expect(readFileSync(b, 'utf8')).toBe(toHtml(svg));
    expect(() => writePlot(join(TMP, 'p.png'), svg)).toThrow('use a path ending in .svg or .html');
    expect(() => writePlot(join(TMP, 'q.svg'), 'nope')).toThrow('expected an SVG document');
  });
});

// ---------------------------------------------------------------------------------------------

describe('rendered in headless Chromium', () => {
  const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

  it('the PNG decoder handles filters 0-4, RGB and RGBA', () => {
    for (const channels of [3, 4] as const) {
      const [w, h] = [7, 11];
      const px = new Uint8Array(w * h * channels).map((_, i) => (i * 37 + (i >> 3) * 11) & 0xff);
      const png = decodePng(encodePng(w, h, channels, px));
      expect([png.width, png.height, png.channels]).toEqual([w, h, channels]);
      expect(Array.from(png.pixels)).toEqual(Array.from(px));
    }
  });

  /** Renders `svg` as an HTML page in a W x H window and decodes the screenshot. */
  function render(name: string, svg: string, W: number, H: number): Png {
    if (!existsSync(CHROMIUM))
      throw new Error(`headless Chromium not found at ${CHROMIUM}: run \`npm run setup\` (it installs the Debian package chromium), or set CHROMIUM to a Chromium binary`);
    const page = writePlot(join(TMP, `${name}.html`), svg);
    const shot = join(TMP, `${name}.png`);
    const profile = mkdtempSync(join(TMP, 'profile-'));
    const r = spawnSync(
      CHROMIUM,
      [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-dev-shm-usage',
        '--hide-scrollbars',
        '--force-device-scale-factor=1',
        `--user-data-dir=${profile}`,
        `--screenshot=${shot}`,
        `--window-size=${W},${H}`,
        pathToFileURL(page).href,
      ],
      { encoding: 'utf8', timeout: 30_000, env: childEnv() },
    );
    if (r.error || !existsSync(shot))
      throw new Error(`chromium did not write a screenshot (status ${r.status}${r.error ? `, ${r.error.message}` : ''}):\n${(r.stderr ?? '').slice(-2000)}`);
    if (process.env.TORCHSIGHT_PLOT_OUT) {
      mkdirSync(process.env.TORCHSIGHT_PLOT_OUT, { recursive: true });
      copyFileSync(shot, join(process.env.TORCHSIGHT_PLOT_OUT, `${name}.png`));
    }
    const png = decodePng(readFileSync(shot));
    expect([png.width, png.height]).toEqual([W, H]);
    return png;
  }

  it('a diverging heatmap: red at the maximum, blue at the minimum, white background', () => {
    const values = [
      [NaN, 0.4, -0.3, 0.1, 0.0],
      [0.2, -0.1, 0.5, 2.5, -0.6],
      [-2.5, 0.3, 0.0, -0.2, 0.9],
      [0.6, -0.8, 1.1, 0.0, -0.4],
    ];
    const svg = heatmap(values, {
      title: 'patching sweep <render>',
      rowLabels: ['0', '1', '2', '3'],
      colLabels: ['5 " in"', '6 " the"', '7 " city"', '8 " of"', '9'],
      xLabel: 'position',
      yLabel: 'layer',
      annotate: false,
    });
    const root = parseXml(svg);
    const [w, h] = [Number(root.attrs.width), Number(root.attrs.height)];
    const png = render('heatmap', svg, w + 40, h + 40);
    const at = (i: number, j: number) => pixel(png, ...centerOf(cellAt(root, i, j)));

    const max = at(1, 3);
    expect(redish(max), `max cell ${max}`).toBe(true);
    expect(near(max, RED), `max cell ${max}`).toBe(true);
    const min = at(2, 0);
    expect(blueish(min), `min cell ${min}`).toBe(true);
    expect(near(min, BLUE), `min cell ${min}`).toBe(true);
    expect(whiteish(at(2, 2)), `center-valued cell ${at(2, 2)}`).toBe(true);
    // smaller positive values are lighter reds: still more red than blue, but paler than the max
    const mid = at(3, 2);
    expect(mid[0] > mid[2] && mid[1] > max[1] + 40, `cell 1.1 ${mid}`).toBe(true);
    // NaN: hatched grey
    const nan = at(0, 0);
    expect(greyish(nan), `NaN cell ${nan}`).toBe(true);
    // the color bar: red at its top, blue at its bottom
    const bar = byClass(root, 'colorbar-fill')[0];
    const [bx, by] = centerOf(bar);
    const half = Number(bar.attrs.height) / 2;
    expect(redish(pixel(png, bx, by - half + 3)), `bar top ${pixel(png, bx, by - half + 3)}`).toBe(true);
    expect(blueish(pixel(png, bx, by + half - 3)), `bar bottom ${pixel(png, bx, by + half - 3)}`).toBe(true);
    // the background: white in the page margin, inside the SVG off the plot, at the corners
    for (const [x, y] of [[2, 2], [w - 3, h - 3], [w + 20, h + 20], [png.width - 1, png.height - 1], [w + 20, 5]] as const)
      expect(whiteish(pixel(png, x, y)), `background at (${x}, ${y}): ${pixel(png, x, y)}`).toBe(true);
    // text was drawn: dark pixels in the title's band, left of the grid's labels
    let dark = 0;
    for (let y = 12; y < 40; y++) for (let x = 12; x < 200; x++) if (pixel(png, x, y).every((v) => v < 110)) dark++;
    expect(dark, 'dark pixels of the title').toBeGreaterThan(50);
  });

  it('a logit-lens table: probability 1 dark blue, 0 white', () => {
    const svg = logitLensTable(
      [
        { layer: '0', tokens: ['a', 'b'], probs: [0.95, 0.0] },
        { layer: '1', tokens: [' P', '\n'], probs: [0.5, 0.02] },
      ],
      { title: 'lens' },
    );
    const root = parseXml(svg);
    const [w, h] = [Number(root.attrs.width), Number(root.attrs.height)];
    const png = render('lens', svg, w + 20, h + 20);
    const at = (i: number, j: number) => pixel(png, ...centerOf(cellAt(root, i, j)));
    const hi = at(0, 0);
    expect(blueish(hi) && hi[2] < 150, `p=0.95 ${hi}`).toBe(true);
    expect(whiteish(at(0, 1)), `p=0 ${at(0, 1)}`).toBe(true);
    const half = at(1, 0);
    expect(blueish(half) && half[0] > hi[0] + 40, `p=0.5 ${half}`).toBe(true);
    expect(whiteish(pixel(png, w + 10, h + 10))).toBe(true);
  });
});
