// `torchsight/plot`: standalone SVG (and HTML) plots for interpretability results: a heatmap
// (a layer x position patching sweep, an attention pattern, any 2-D table of numbers) and a
// logit-lens table. Plain strings out, no DOM and no dependencies; `writePlot` is the only part
// that touches the file system. One concern a file under plot/.
export { heatmap, type HeatmapOptions } from './plot/heatmap.js';
export { logitLensTable, type LogitLensRow, type LogitLensOptions } from './plot/logit-lens.js';
export { toHtml, writePlot } from './plot/output.js';
