// A plot as a standalone HTML page, and writing a plot to a file (the only part of
// torchsight/plot that touches the file system).
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { escapeXml } from './svg.js';

/** A minimal standalone HTML page showing `svg` (title: `title`, else the SVG's own title). */
export function toHtml(svg: string, title?: string): string {
  if (typeof svg !== 'string' || !/<svg[\s>]/.test(svg)) throw new Error('toHtml: expected an SVG document (a string with an <svg> element)');
  const body = svg.replace(/^\s*<\?xml[^>]*\?>\s*/, '').replace(/^\s*<!DOCTYPE[^>]*>\s*/i, '');
  const own = /<svg[^>]*>\s*<title>([^<]*)<\/title>/.exec(body)?.[1]; // already escaped
  const pageTitle = title !== undefined ? escapeXml(title) : (own ?? 'torchsight plot');
  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    `<title>${pageTitle}</title>`,
    '<style>html, body { margin: 0; padding: 0; background: #fff; } svg { display: block; }</style>',
    '</head>',
    '<body>',
    body.trimEnd(),
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

/**
 * Writes a plot: the SVG document for a path ending in `.svg`, or the HTML page (`toHtml`) for
 * one ending in `.html` / `.htm`. Creates the parent folders. Returns `path`.
 */
export function writePlot(path: string, svg: string): string {
  if (typeof path !== 'string' || path === '') throw new Error('writePlot: path must be a non-empty string');
  if (typeof svg !== 'string' || !/<svg[\s>]/.test(svg)) throw new Error('writePlot: expected an SVG document (a string with an <svg> element)');
  const lower = path.toLowerCase();
  const html = lower.endsWith('.html') || lower.endsWith('.htm');
  if (!html && !lower.endsWith('.svg')) throw new Error(`writePlot: ${path}: use a path ending in .svg or .html (plots are SVG; open them in a browser)`);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, html ? toHtml(svg) : svg);
  return path;
}
