// Prints a tensor the way PyTorch's repr does: `tensor([[ 0.1234, -1.5000]])`, integers as
// `1.`, scientific notation for wide ranges, `...` past 1000 elements, and the device and
// dtype when they are not the defaults.

const EDGE = 3;
const THRESHOLD = 1000;

function isFloatDtype(dtype: string): boolean {
  return dtype.startsWith('float') || dtype === 'bfloat16';
}

function formatter(values: number[], dtype: string): (v: number) => string {
  if (dtype === 'bool') return (v) => (v ? 'True' : 'False');
  if (!isFloatDtype(dtype)) return (v) => String(v);
  const finite = values.filter((v) => Number.isFinite(v));
  const special = (v: number) => (Number.isNaN(v) ? 'nan' : v > 0 ? 'inf' : '-inf');
  if (finite.every((v) => Number.isInteger(v))) {
    const big = finite.some((v) => Math.abs(v) >= 1e8);
    return (v) => (!Number.isFinite(v) ? special(v) : big ? v.toExponential(4).replace(/e([+-])(\d)$/, 'e$10$2') : `${v.toFixed(0)}.`);
  }
  const abs = finite.map(Math.abs).filter((v) => v > 0);
  const mx = abs.length ? Math.max(...abs) : 0;
  const mn = abs.length ? Math.min(...abs) : 0;
  const sci = abs.length > 0 && (mx / mn > 1000 || mx > 1e8 || mn < 1e-4);
  if (sci) return (v) => (!Number.isFinite(v) ? special(v) : v.toExponential(4).replace(/e([+-])(\d)$/, 'e$10$2'));
  return (v) => (!Number.isFinite(v) ? special(v) : v.toFixed(4));
}

export function formatTensor(flat: ArrayLike<number | bigint | boolean>, shape: number[], dtype: string, device: string): string {
  const numel = shape.reduce((a, b) => a * b, 1);
  const summarize = numel > THRESHOLD;
  const nums: number[] = Array.from(flat as ArrayLike<number>, (v) => Number(v));
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  // the elements actually shown decide the formatting, as in PyTorch
  const shown: number[] = [];
  const collect = (dim: number, offset: number) => {
    if (dim === shape.length) return void shown.push(nums[offset]);
    const n = shape[dim];
    const idx = summarize && n > 2 * EDGE ? [...range(0, EDGE), ...range(n - EDGE, n)] : range(0, n);
    for (const i of idx) collect(dim + 1, offset + i * strides[dim]);
  };
  collect(0, 0);
  const fmt = formatter(shown, dtype);
  const width = Math.max(0, ...shown.map((v) => fmt(v).length));
  const cell = (v: number) => fmt(v).padStart(width);
  const indent = 'tensor('.length;
  const render = (dim: number, offset: number): string => {
    if (dim === shape.length) return cell(nums[offset]);
    const n = shape[dim];
    const parts: string[] = [];
    const add = (i: number) => parts.push(render(dim + 1, offset + i * strides[dim]));
    if (summarize && n > 2 * EDGE) {
      for (let i = 0; i < EDGE; i++) add(i);
      parts.push('...');
      for (let i = n - EDGE; i < n; i++) add(i);
    } else {
      for (let i = 0; i < n; i++) add(i);
    }
    if (dim === shape.length - 1) return `[${parts.join(', ')}]`;
    const sep = ',' + '\n'.repeat(shape.length - dim - 1) + ' '.repeat(indent + dim + 1);
    return `[${parts.join(sep)}]`;
  };
  let body: string;
  if (shape.length === 0) body = fmt(nums[0]);
  else if (numel === 0) body = `[]`;
  else body = render(0, 0);
  const extras: string[] = [];
  if (device !== 'cpu') extras.push(`device='${device.includes(':') ? device : device + ':0'}'`);
  if (numel === 0 && shape.length > 1) extras.push(`size=(${shape.join(', ')})`);
  const defaultDtype = dtype === 'float32' || dtype === 'int64' || dtype === 'bool';
  if (!defaultDtype) extras.push(`dtype=torch.${dtype}`);
  return `tensor(${body}${extras.length ? ', ' + extras.join(', ') : ''})`;
}

function range(a: number, b: number): number[] {
  const out: number[] = [];
  for (let i = a; i < b; i++) out.push(i);
  return out;
}
