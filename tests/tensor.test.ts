// The eager Tensor (API.md sections 3 and 7) against real PyTorch: every op on seeded random
// tensors made in Python (and a few made here and sent to Python), Tensor.from for each dtype,
// repr(tensor) character for character, and the errors. All reference values come from one
// oracle call (Debian's python3 with torch 1.13); none is copied from our own output.
import { describe, expect, it } from 'vitest';
import { Tensor, runtimeInfo, type Dtype } from '../src/index.js';
import { expectClose, num, oracle, type OracleTensor } from './helpers.js';

// ---- inputs ------------------------------------------------------------------------------

/** Made in Python with a seeded generator; their values come back to build the JS tensors. */
const PY_INPUTS = `
g = torch.Generator().manual_seed(20240611)
I = {
  'a': torch.randn(4, 5, generator=g),
  'b': torch.randn(4, 5, generator=g),
  'r': torch.randn(5, generator=g),
  'c': torch.randn(4, 1, generator=g),
  'p': torch.rand(4, 5, generator=g) + 0.5,
  'm': torch.randn(5, 3, generator=g),
  'x': torch.randn(3, 6, 8, generator=g),
  'w': torch.randn(8, 2, generator=g),
  'ia': torch.randint(-5, 6, (3, 4), generator=g),
  'ib': torch.randint(1, 6, (3, 4), generator=g),
}
`;

/** Made here (a small LCG) and sent to Python as a literal: the other direction. */
function lcg(seed: number, n: number): number[] {
  const out: number[] = [];
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out.push(Math.round(((s / 2 ** 32) * 8 - 4) * 1000) / 1000);
  }
  return out;
}
const J_DATA = [lcg(7, 5), lcg(8, 5), lcg(9, 5)]; // [3, 5]

/** Python literal of finite numbers / booleans (nested arrays). */
const lit = (v: unknown): string =>
  JSON.stringify(v, (_k, x) => (typeof x === 'boolean' ? `@${x ? 'True' : 'False'}` : x)).replace(/"@(True|False)"/g, '$1');

type In = Record<'a' | 'b' | 'r' | 'c' | 'p' | 'm' | 'x' | 'w' | 'ia' | 'ib' | 'j', Tensor>;
type Out = Tensor | { values: Tensor; indices: Tensor };

/** [name, the JS computation, the same in PyTorch, tolerance]. */
type Case = [string, (t: In) => Out, string, number?];

const ip = (t: Tensor, f: (t: Tensor) => unknown): Tensor => {
  f(t);
  return t;
};

const OP_CASES: Case[] = [
  // arithmetic: tensors, numbers, broadcasting, alpha
  ['add tensor', (t) => t.a.add(t.b), 'a.add(b)'],
  ['add int', (t) => t.a.add(3), 'a.add(3)'],
  ['add float', (t) => t.a.add(0.25), 'a.add(0.25)'],
  ['add row broadcast', (t) => t.a.add(t.r), 'a + r'],
  ['add column broadcast', (t) => t.a.add(t.c), 'a + c'],
  ['add outer broadcast', (t) => t.c.add(t.r), 'c + r'],
  ['add alpha', (t) => t.a.add(t.b, 2), 'a.add(b, alpha=2)'],
  ['add alpha option', (t) => t.a.add(t.b, { alpha: -0.5 }), 'a.add(b, alpha=-0.5)'],
  ['add number alpha', (t) => t.a.add(2, 3), 'a.add(2, alpha=3)'],
  ['add 0-d tensor', (t) => t.a.add(Tensor.from(1.5)), 'a.add(torch.tensor(1.5))'],
  ['sub tensor', (t) => t.a.sub(t.b), 'a.sub(b)'],
  ['sub number', (t) => t.a.sub(1.5), 'a.sub(1.5)'],
  ['sub alpha broadcast', (t) => t.a.sub(t.r, 3), 'a.sub(r, alpha=3)'],
  ['sub outer broadcast', (t) => t.c.sub(t.r), 'c - r'],
  ['mul tensor', (t) => t.a.mul(t.b), 'a.mul(b)'],
  ['mul number', (t) => t.a.mul(-2), 'a.mul(-2)'],
  ['mul fraction', (t) => t.a.mul(0.1), 'a.mul(0.1)'],
  ['mul broadcast', (t) => t.a.mul(t.c), 'a * c'],
  ['div tensor', (t) => t.a.div(t.p), 'a.div(p)'],
  ['div number', (t) => t.a.div(3), 'a.div(3)'],
  ['div broadcast', (t) => t.a.div(t.r), 'a / r'],
  ['neg', (t) => t.a.neg(), 'a.neg()'],
  ['pow 2', (t) => t.a.pow(2), 'a.pow(2)'],
  ['pow 3', (t) => t.a.pow(3), 'a.pow(3)'],
  ['pow 0.5', (t) => t.p.pow(0.5), 'p.pow(0.5)'],
  ['pow tensor', (t) => t.p.pow(t.b), 'p.pow(b)'],
  ['abs', (t) => t.a.abs(), 'a.abs()'],
  ['exp', (t) => t.a.exp(), 'a.exp()'],
  ['log', (t) => t.p.log(), 'p.log()'],
  ['log of negatives is nan', (t) => t.a.log(), 'a.log()'],
  ['sqrt', (t) => t.p.sqrt(), 'p.sqrt()'],
  ['sqrt of negatives is nan', (t) => t.a.sqrt(), 'a.sqrt()'],
  ['matmul 2d', (t) => t.a.matmul(t.m), 'a.matmul(m)'],
  ['matmul 1d @ 2d', (t) => t.r.matmul(t.m), 'r.matmul(m)'],
  ['matmul 2d @ 1d', (t) => t.a.matmul(t.r), 'a.matmul(r)'],
  ['matmul dot', (t) => t.r.matmul(t.r), 'r.matmul(r)'],
  ['matmul batched', (t) => t.x.matmul(t.w), 'x.matmul(w)'],
  ['matmul JS-made', (t) => t.j.matmul(t.m), 'j.matmul(m)'],
  // integer tensors keep PyTorch's type promotion
  ['int add', (t) => t.ia.add(t.ib), 'ia.add(ib)'],
  ['int sub alpha', (t) => t.ia.sub(t.ib, 2), 'ia.sub(ib, alpha=2)'],
  ['int mul int', (t) => t.ia.mul(2), 'ia.mul(2)'],
  ['int mul float', (t) => t.ia.mul(2.5), 'ia.mul(2.5)'],
  ['int div is true division', (t) => t.ia.div(t.ib), 'ia.div(ib)'],
  ['int neg', (t) => t.ia.neg(), 'ia.neg()'],
  ['int abs', (t) => t.ia.abs(), 'ia.abs()'],
  ['int sum', (t) => t.ia.sum(), 'ia.sum()'],
  ['int sum dim', (t) => t.ia.sum(1), 'ia.sum(1)'],
  ['int max', (t) => t.ia.max(), 'ia.max()'],
  ['int add float tensor', (t) => t.ia.add(t.a.index(':3, :4')), 'ia.add(a[:3, :4])'],
  // reductions
  ['mean', (t) => t.a.mean(), 'a.mean()'],
  ['mean dim', (t) => t.a.mean(1), 'a.mean(1)'],
  ['mean dim keepdim', (t) => t.a.mean(1, true), 'a.mean(1, keepdim=True)'],
  ['mean options', (t) => t.a.mean({ dim: 1, keepdim: true }), 'a.mean(dim=1, keepdim=True)'],
  ['mean negative dim', (t) => t.a.mean(-1), 'a.mean(-1)'],
  ['mean dims', (t) => t.x.mean([0, 2]), 'x.mean((0, 2))'],
  ['mean dims options', (t) => t.x.mean({ dim: [1, 2], keepdim: true }), 'x.mean(dim=(1, 2), keepdim=True)'],
  ['sum', (t) => t.a.sum(), 'a.sum()'],
  ['sum dim', (t) => t.a.sum(0), 'a.sum(0)'],
  ['sum keepdim', (t) => t.a.sum(-1, true), 'a.sum(-1, keepdim=True)'],
  ['sum dims', (t) => t.x.sum([0, 1]), 'x.sum((0, 1))'],
  ['sum options', (t) => t.x.sum({ dim: 2 }), 'x.sum(dim=2)'],
  ['max', (t) => t.a.max(), 'a.max()'],
  ['max dim', (t) => t.a.max(1), 'a.max(1)'],
  ['max dim keepdim', (t) => t.a.max(1, true), 'a.max(1, keepdim=True)'],
  ['max options', (t) => t.a.max({ dim: 0, keepdim: true }), 'a.max(dim=0, keepdim=True)'],
  ['max 3d', (t) => t.x.max(-1), 'x.max(-1)'],
  ['min', (t) => t.a.min(), 'a.min()'],
  ['min dim', (t) => t.a.min(0), 'a.min(0)'],
  ['min keepdim', (t) => t.x.min(-1, true), 'x.min(-1, keepdim=True)'],
  ['min options', (t) => t.a.min({ dim: 1 }), 'a.min(dim=1)'],
  ['norm', (t) => t.a.norm(), 'a.norm()'],
  ['norm p=1', (t) => t.a.norm(1), 'a.norm(1)'],
  ['norm p=inf', (t) => t.a.norm(Infinity), "a.norm(float('inf'))"],
  ['norm p=3', (t) => t.a.norm(3), 'a.norm(3)'],
  ['norm dim', (t) => t.a.norm(2, 1), 'a.norm(2, 1)'],
  ['norm dim keepdim', (t) => t.a.norm(2, 1, true), 'a.norm(2, 1, keepdim=True)'],
  ['norm options', (t) => t.a.norm({ p: 1, dim: 0 }), 'a.norm(p=1, dim=0)'],
  ['norm options dim only', (t) => t.a.norm({ dim: 1 }), 'a.norm(dim=1)'],
  ['norm dims', (t) => t.x.norm(2, [1, 2]), 'x.norm(2, (1, 2))'],
  ['softmax', (t) => t.a.softmax(-1), 'a.softmax(-1)'],
  ['softmax dim 0', (t) => t.a.softmax(0), 'a.softmax(0)'],
  ['softmax options', (t) => t.a.softmax({ dim: 1 }), 'a.softmax(dim=1)'],
  ['softmax 3d', (t) => t.x.softmax(1), 'x.softmax(1)'],
  ['softmax JS-made', (t) => t.j.softmax(-1), 'j.softmax(-1)'],
  ['logSoftmax', (t) => t.a.logSoftmax(1), 'a.log_softmax(1)'],
  ['logSoftmax options', (t) => t.x.logSoftmax({ dim: -1 }), 'x.log_softmax(dim=-1)'],
  ['argmax', (t) => t.a.argmax(), 'a.argmax()'],
  ['argmax dim', (t) => t.a.argmax(1), 'a.argmax(1)'],
  ['argmax keepdim', (t) => t.a.argmax(1, true), 'a.argmax(1, keepdim=True)'],
  ['argmax options', (t) => t.a.argmax({ dim: 0 }), 'a.argmax(dim=0)'],
  ['argmax 3d', (t) => t.x.argmax(-1), 'x.argmax(-1)'],
  ['topk', (t) => t.a.topk(3), 'a.topk(3)'],
  ['topk dim', (t) => t.a.topk(2, 0), 'a.topk(2, 0)'],
  ['topk smallest option', (t) => t.a.topk(3, { largest: false }), 'a.topk(3, largest=False)'],
  ['topk smallest positional', (t) => t.a.topk(2, 1, false), 'a.topk(2, 1, False)'],
  ['topk 1d', (t) => t.r.topk(5), 'r.topk(5)'],
  ['topk options dim', (t) => t.x.topk(2, { dim: 1 }), 'x.topk(2, dim=1)'],
  ['topk JS-made', (t) => t.j.topk(2), 'j.topk(2)'],
  // shapes
  ['reshape 1 arg', (t) => t.a.reshape(20), 'a.reshape(20)'],
  ['reshape varargs', (t) => t.a.reshape(2, 10), 'a.reshape(2, 10)'],
  ['reshape array', (t) => t.a.reshape([5, 4]), 'a.reshape([5, 4])'],
  ['reshape -1', (t) => t.a.reshape(-1, 2), 'a.reshape(-1, 2)'],
  ['reshape 3d', (t) => t.x.reshape(6, -1), 'x.reshape(6, -1)'],
  ['reshape non-contiguous', (t) => t.a.transpose(0, 1).reshape(20), 'a.transpose(0, 1).reshape(20)'],
  ['view varargs', (t) => t.a.view(2, -1), 'a.view(2, -1)'],
  ['view array', (t) => t.a.view([10, 2]), 'a.view([10, 2])'],
  ['view 3d', (t) => t.x.view(18, 8), 'x.view(18, 8)'],
  ['transpose', (t) => t.a.transpose(0, 1), 'a.transpose(0, 1)'],
  ['transpose 3d', (t) => t.x.transpose(0, 2), 'x.transpose(0, 2)'],
  ['transpose negative', (t) => t.x.transpose(-1, 1), 'x.transpose(-1, 1)'],
  ['permute varargs', (t) => t.x.permute(2, 0, 1), 'x.permute(2, 0, 1)'],
  ['permute array', (t) => t.x.permute([1, 2, 0]), 'x.permute([1, 2, 0])'],
  ['squeeze all', (t) => t.a.reshape(1, 4, 1, 5).squeeze(), 'a.reshape(1, 4, 1, 5).squeeze()'],
  ['squeeze 0', (t) => t.a.reshape(1, 4, 1, 5).squeeze(0), 'a.reshape(1, 4, 1, 5).squeeze(0)'],
  ['squeeze 2', (t) => t.a.reshape(1, 4, 1, 5).squeeze(2), 'a.reshape(1, 4, 1, 5).squeeze(2)'],
  ['squeeze no-op', (t) => t.a.reshape(1, 4, 1, 5).squeeze(1), 'a.reshape(1, 4, 1, 5).squeeze(1)'],
  ['squeeze negative', (t) => t.a.reshape(1, 4, 1, 5).squeeze(-2), 'a.reshape(1, 4, 1, 5).squeeze(-2)'],
  ['unsqueeze 0', (t) => t.a.unsqueeze(0), 'a.unsqueeze(0)'],
  ['unsqueeze -1', (t) => t.a.unsqueeze(-1), 'a.unsqueeze(-1)'],
  ['unsqueeze 1', (t) => t.a.unsqueeze(1), 'a.unsqueeze(1)'],
  ['flatten', (t) => t.x.flatten(), 'x.flatten()'],
  ['flatten start', (t) => t.x.flatten(1), 'x.flatten(1)'],
  ['flatten range', (t) => t.x.flatten(0, 1), 'x.flatten(0, 1)'],
  ['flatten negative', (t) => t.x.flatten(-2), 'x.flatten(-2)'],
  // indexing, numpy grammar (x is [3, 6, 8])
  ["index '0'", (t) => t.x.index('0'), 'x[0]'],
  ["index ':, -1'", (t) => t.x.index(':, -1'), 'x[:, -1]'],
  ["index '..., 0:4'", (t) => t.x.index('..., 0:4'), 'x[..., 0:4]'],
  ["index ':, 2:5, :'", (t) => t.x.index(':, 2:5, :'), 'x[:, 2:5, :]'],
  ["index 'None'", (t) => t.x.index('None'), 'x[None]'],
  ["index '1:, ::2'", (t) => t.x.index('1:, ::2'), 'x[1:, ::2]'],
  ["index '-1, 1:5:2, ...'", (t) => t.x.index('-1, 1:5:2, ...'), 'x[-1, 1:5:2, ...]'],
  ["index '..., None, -3'", (t) => t.x.index('..., None, -3'), 'x[..., None, -3]'],
  ["index 'None, ..., None'", (t) => t.x.index('None, ..., None'), 'x[None, ..., None]'],
  ["index '0, 0, 0' (a scalar)", (t) => t.x.index('0, 0, 0'), 'x[0, 0, 0]'],
  ["index '::2, -2:'", (t) => t.x.index('::2, -2:'), 'x[::2, -2:]'],
  ["index ' 1 , : , 3 ' (spaces)", (t) => t.x.index(' 1 , : , 3 '), 'x[1, :, 3]'],
  ["index '1:100' (clamped)", (t) => t.x.index('1:100'), 'x[1:100]'],
  ["index ':, -100:2' (clamped)", (t) => t.x.index(':, -100:2'), 'x[:, -100:2]'],
  ["index '0:0' (empty)", (t) => t.x.index('0:0'), 'x[0:0]'],
  ["index '...'", (t) => t.x.index('...'), 'x[...]'],
  ["index '1, ..., 2'", (t) => t.x.index('1, ..., 2'), 'x[1, ..., 2]'],
  ["index '1,' (trailing comma)", (t) => t.x.index('1,'), 'x[1,]'],
  ["index '' is x[()]", (t) => t.x.index(''), 'x[()]'],
  ['index [] is x[()]', (t) => t.x.index([]), 'x[()]'],
  ["index 2d ':, 2:5'", (t) => t.a.index(':, 2:5'), 'a[:, 2:5]'],
  ["index 1d '-1'", (t) => t.r.index('-1'), 'r[-1]'],
  ['index [null, -1]', (t) => t.x.index([null, -1]), 'x[:, -1]'],
  ['index [-1]', (t) => t.x.index([-1]), 'x[-1]'],
  ["index ['None', 0]", (t) => t.x.index(['None', 0]), 'x[None, 0]'],
  ["index [0, null, '2:4']", (t) => t.x.index([0, null, '2:4']), 'x[0, :, 2:4]'],
  ["index [1, '...']", (t) => t.x.index([1, '...']), 'x[1, ...]'],
  ['index then transpose', (t) => t.x.index(':, -1').transpose(0, 1), 'x[:, -1].transpose(0, 1)'],
  // copies and conversions
  ['clone', (t) => t.a.clone(), 'a.clone()'],
  ['detach', (t) => t.a.detach(), 'a.detach()'],
  ["to('float64')", (t) => t.a.to('float64'), 'a.to(torch.float64)'],
  ["to('float16')", (t) => t.a.to('float16'), 'a.to(torch.float16)'],
  ["to('int64') truncates", (t) => t.a.mul(3).to('int64'), 'a.mul(3).to(torch.int64)'],
  ["to('cpu', 'float64')", (t) => t.a.to('cpu', 'float64'), "a.to('cpu', torch.float64)"],
  ["to('cpu')", (t) => t.a.to('cpu'), "a.to('cpu')"],
  ['float of float64', (t) => t.a.to('float64').mul(1.1).float(), 'a.to(torch.float64).mul(1.1).float()'],
  ['float of int64', (t) => t.ia.float(), 'ia.float()'],
  ['half', (t) => t.a.half(), 'a.half()'],
  ['half of JS-made', (t) => t.j.half(), 'j.half()'],
  ['bfloat16', (t) => t.a.bfloat16(), 'a.bfloat16()'],
  ['half arithmetic', (t) => t.a.half().add(t.b.half()).mul(3), '(a.half() + b.half()).mul(3)'],
  ['half softmax', (t) => t.a.half().float().softmax(-1).half(), 'a.half().float().softmax(-1).half()'],
  ['cosineSimilarity (dim=1)', (t) => t.a.cosineSimilarity(t.b), 'torch.cosine_similarity(a, b)'],
  ['cosineSimilarity dim 0', (t) => t.a.cosineSimilarity(t.b, 0), 'torch.cosine_similarity(a, b, 0)'],
  ['cosineSimilarity options', (t) => t.a.cosineSimilarity(t.b, { dim: -1 }), 'torch.cosine_similarity(a, b, dim=-1)'],
  ['cosineSimilarity broadcast', (t) => t.a.cosineSimilarity(t.r), 'torch.cosine_similarity(a, r)'],
  ['cosineSimilarity 3d', (t) => t.x.cosineSimilarity(t.x.index('0:1'), 2), 'torch.cosine_similarity(x, x[0:1], 2)'],
  ['cat', (t) => Tensor.cat([t.a, t.b]), 'torch.cat([a, b])'],
  ['cat dim 1', (t) => Tensor.cat([t.a, t.b], 1), 'torch.cat([a, b], 1)'],
  ['cat dim -1, unequal widths', (t) => Tensor.cat([t.a, t.c, t.b], -1), 'torch.cat([a, c, b], -1)'],
  ['cat 3d', (t) => Tensor.cat([t.x, t.x.index('0:1')]), 'torch.cat([x, x[0:1]])'],
  ['stack', (t) => Tensor.stack([t.a, t.b]), 'torch.stack([a, b])'],
  ['stack dim 1', (t) => Tensor.stack([t.a, t.b], 1), 'torch.stack([a, b], 1)'],
  ['stack dim -1', (t) => Tensor.stack([t.a, t.b, t.p], -1), 'torch.stack([a, b, p], -1)'],
  ['stack 1d', (t) => Tensor.stack([t.r, t.r.neg(), t.r]), 'torch.stack([r, -r, r])'],
  // in place: the tensor itself changes (on clones of the inputs)
  ['copy_', (t) => ip(t.a.clone(), (u) => u.copy_(t.b)), 'a.clone().copy_(b)'],
  ['copy_ broadcast', (t) => ip(t.a.clone(), (u) => u.copy_(t.r)), 'a.clone().copy_(r)'],
  ['copy_ from float64', (t) => ip(t.a.clone(), (u) => u.copy_(t.b.to('float64').mul(1.1))), 'a.clone().copy_(b.double() * 1.1)'],
  ['add_', (t) => ip(t.a.clone(), (u) => u.add_(t.b)), 'a.clone().add_(b)'],
  ['add_ alpha', (t) => ip(t.a.clone(), (u) => u.add_(t.b, 2)), 'a.clone().add_(b, alpha=2)'],
  ['add_ alpha option', (t) => ip(t.a.clone(), (u) => u.add_(t.r, { alpha: 0.5 })), 'a.clone().add_(r, alpha=0.5)'],
  ['add_ number', (t) => ip(t.a.clone(), (u) => u.add_(3)), 'a.clone().add_(3)'],
  ['sub_', (t) => ip(t.a.clone(), (u) => u.sub_(t.c)), 'a.clone().sub_(c)'],
  ['sub_ number', (t) => ip(t.a.clone(), (u) => u.sub_(1.5)), 'a.clone().sub_(1.5)'],
  ['sub_ alpha', (t) => ip(t.a.clone(), (u) => u.sub_(t.b, 3)), 'a.clone().sub_(b, alpha=3)'],
  ['mul_', (t) => ip(t.a.clone(), (u) => u.mul_(t.c)), 'a.clone().mul_(c)'],
  ['mul_ number', (t) => ip(t.a.clone(), (u) => u.mul_(-2)), 'a.clone().mul_(-2)'],
  ['mul_ row', (t) => ip(t.a.clone(), (u) => u.mul_(t.r)), 'a.clone().mul_(r)'],
  ['div_', (t) => ip(t.a.clone(), (u) => u.div_(t.p)), 'a.clone().div_(p)'],
  ['div_ number', (t) => ip(t.a.clone(), (u) => u.div_(4)), 'a.clone().div_(4)'],
  ['fill_', (t) => ip(t.a.clone(), (u) => u.fill_(0.5)), 'a.clone().fill_(0.5)'],
  ['fill_ negative int', (t) => ip(t.a.clone(), (u) => u.fill_(-3)), 'a.clone().fill_(-3)'],
  ['zero_', (t) => ip(t.a.clone(), (u) => u.zero_()), 'a.clone().zero_()'],
  ['int add_', (t) => ip(t.ia.clone(), (u) => u.add_(t.ib)), 'ia.clone().add_(ib)'],
  ['int mul_', (t) => ip(t.ia.clone(), (u) => u.mul_(3)), 'ia.clone().mul_(3)'],
  ['half add_ half', (t) => ip(t.a.half(), (u) => u.add_(t.b.half())), 'a.half().add_(b.half())'],
  // in place through views: the base tensor changes
  ["index(':, 0').fill_(0)", (t) => ip(t.a.clone(), (u) => u.index(':, 0').fill_(0)), 'ip(a.clone(), lambda u: u[:, 0].fill_(0))'],
  ["index('1').add_(r)", (t) => ip(t.a.clone(), (u) => u.index('1').add_(t.r)), 'ip(a.clone(), lambda u: u[1].add_(r))'],
  ["index('..., 0:2').mul_(0)", (t) => ip(t.a.clone(), (u) => u.index('..., 0:2').mul_(0)), 'ip(a.clone(), lambda u: u[..., 0:2].mul_(0))'],
  ["index('::2, 1:3').copy_(...)", (t) => ip(t.a.clone(), (u) => u.index('::2, 1:3').copy_(t.b.index('0:2, 0:2'))), 'ip(a.clone(), lambda u: u[::2, 1:3].copy_(b[0:2, 0:2]))'],
  ["index('-1').sub_(3)", (t) => ip(t.a.clone(), (u) => u.index('-1').sub_(3)), 'ip(a.clone(), lambda u: u[-1].sub_(3))'],
  ["index('1:3').div_(p)", (t) => ip(t.a.clone(), (u) => u.index('1:3').div_(t.p.index('1:3'))), 'ip(a.clone(), lambda u: u[1:3].div_(p[1:3]))'],
  ["transpose(0, 1).index('0').zero_()", (t) => ip(t.a.clone(), (u) => u.transpose(0, 1).index('0').zero_()), 'ip(a.clone(), lambda u: u.transpose(0, 1)[0].zero_())'],
  ["view(20).index('0:5').fill_(7)", (t) => ip(t.a.clone(), (u) => u.view(20).index('0:5').fill_(7)), 'ip(a.clone(), lambda u: u.view(20)[0:5].fill_(7))'],
  ['detach().add_(1)', (t) => ip(t.a.clone(), (u) => u.detach().add_(1)), 'ip(a.clone(), lambda u: u.detach().add_(1))'],
  ["index(':, -1').add_(steer) on 3d", (t) => ip(t.x.clone(), (u) => u.index(':, -1').add_(t.w.index(':, 0'))), 'ip(x.clone(), lambda u: u[:, -1].add_(w[:, 0]))'],
  ["index([null, -1]).mul_(2)", (t) => ip(t.x.clone(), (u) => u.index([null, -1]).mul_(2)), 'ip(x.clone(), lambda u: u[:, -1].mul_(2))'],
  ["index('None, 0').fill_(1)", (t) => ip(t.x.clone(), (u) => u.index('None, 0').fill_(1)), 'ip(x.clone(), lambda u: u[None, 0].fill_(1))'],
];

/**
 * Cases that once disagreed with PyTorch (in-place ops cast the other operand first, so
 * float16 rounded twice and int64 truncated; norm dropped keepdim without a dim).
 */
type BugCase = [string, (t: In) => Out, string, number, string];
const NATIVE_BUG_CASES: BugCase[] = [
  [
    'half add_ of a float32 tensor rounds twice',
    (t) => ip(t.a.half(), (u) => u.add_(t.b)),
    'a.half().add_(b)',
    0,
    "inplaceOther() casts `other` to self's dtype before the op, so float16 + float32 is rounded twice; PyTorch computes in float32 and rounds once",
  ],
  [
    'half mul_ of a float32 tensor rounds twice',
    (t) => ip(t.a.half(), (u) => u.mul_(t.b)),
    'a.half().mul_(b)',
    0,
    'same cause as add_: the float32 factor is cast to float16 before multiplying',
  ],
  [
    'half div_ of a float32 tensor rounds twice',
    (t) => ip(t.a.half(), (u) => u.div_(t.p)),
    'a.half().div_(p)',
    0,
    'same cause: the float32 divisor is cast to float16 first',
  ],
  [
    'int64 add_ of a float32 tensor must raise like PyTorch',
    (t) => ip(t.ia.clone(), (u) => u.add_(t.a.index(':3, :4'))),
    'ia.clone().add_(a[:3, :4])',
    0,
    "inplaceOther() truncates the float tensor to int64 and succeeds; PyTorch raises \"result type Float can't be cast to the desired output type Long\" (as our add_(0.5) with a number already does)",
  ],
  [
    'norm({ keepdim: true }) without dim keeps the dims',
    (t) => t.a.norm({ keepdim: true }),
    'a.norm(keepdim=True)',
    1e-5,
    'the norm op ignores keepdim when dim is absent (returns shape [] instead of [1, 1])',
  ],
];

// ---- Tensor.from cases (literals made here; PyTorch builds the same with torch.tensor) ----

const FROM_DATA = [
  [0.1, -2.5, 1 / 3, 1000.7],
  [65519, -0.000123, 7, 2.0000001],
];
const FROM_DTYPES: Dtype[] = ['float32', 'float16', 'bfloat16', 'float64', 'int64', 'int32', 'uint8', 'bool'];
const INT_DATA = [
  [3, -7, 0, 2 ** 31 - 1],
  [1, 2, -3, -(2 ** 31)],
];
const BIG_INT_DATA = [2 ** 40, -(2 ** 52), 2 ** 53];
/** what each dtype is built from in the dtype sweep (uint8 from non-negative integers) */
const DATA_FOR = (d: Dtype) => (d === 'uint8' ? [[0, 1, 127, 128], [255, 3, 0, 9]] : FROM_DATA);
const U8_DATA = [0, 1, 127, 128, 255];
const BOOL_DATA = [[true, false, true], [false, false, true]];

// ---- repr cases ------------------------------------------------------------------------------

/** [name, JS tensor, Python expression]; both sides build the same values. */
const REPR_LITERALS: Array<[string, () => Tensor, string]> = [
  ['2x3 mixed signs', () => Tensor.from([[0.03125, -1.5, 2.25], [-0.12345, 10.5, -3]]), `torch.tensor(${lit([[0.03125, -1.5, 2.25], [-0.12345, 10.5, -3]])})`],
  ['integer-valued floats', () => Tensor.from([1, 2]), 'torch.tensor([1., 2.])'],
  ['integer-valued floats, widths', () => Tensor.from([[-1, 20], [300, 0]]), 'torch.tensor([[-1., 20.], [300., 0.]])'],
  ['integer-valued floats, wide range', () => Tensor.from([1, 2000]), 'torch.tensor([1., 2000.])'],
  ['zeros', () => Tensor.from([0, 0, 0]), 'torch.zeros(3)'],
  ['int64', () => Tensor.from([3, -7, 1234567], { dtype: 'int64' }), 'torch.tensor([3, -7, 1234567])'],
  ['int64 2d', () => Tensor.from([[3, -70], [100, 5]], { dtype: 'int64' }), 'torch.tensor([[3, -70], [100, 5]])'],
  ['int64 past 2^53', () => Tensor.from(BigInt64Array.of(2n ** 60n + 1n, -5n)), 'torch.tensor([2**60 + 1, -5])'],
  ['int32', () => Tensor.from([1, -2, 30], { dtype: 'int32' }), 'torch.tensor([1, -2, 30], dtype=torch.int32)'],
  ['uint8', () => Tensor.from(Uint8Array.of(0, 200, 7)), 'torch.tensor([0, 200, 7], dtype=torch.uint8)'],
  ['bool', () => Tensor.from([[true, false], [false, true]]), 'torch.tensor([[True, False], [False, True]])'],
  ['bool 1d', () => Tensor.from([false, false]), 'torch.tensor([False, False])'],
  ['float16', () => Tensor.from([0.1, -2.5, 3.75], { dtype: 'float16' }), 'torch.tensor([0.1, -2.5, 3.75], dtype=torch.float16)'],
  ['float16 integers', () => Tensor.from([1, 2], { dtype: 'float16' }), 'torch.tensor([1., 2.], dtype=torch.float16)'],
  ['bfloat16', () => Tensor.from([0.1, -2.5, 3.75], { dtype: 'bfloat16' }), 'torch.tensor([0.1, -2.5, 3.75], dtype=torch.bfloat16)'],
  ['float64', () => Tensor.from([1 / 3, 2], { dtype: 'float64' }), 'torch.tensor([1/3, 2.], dtype=torch.float64)'],
  ['scalar', () => Tensor.from(3.5), 'torch.tensor(3.5)'],
  ['scalar negative', () => Tensor.from(-0.123456), 'torch.tensor(-0.123456)'],
  ['scalar integer-valued', () => Tensor.from(7), 'torch.tensor(7.)'],
  ['scalar zero', () => Tensor.from(0), 'torch.tensor(0.)'],
  ['scalar tiny', () => Tensor.from(1e-7), 'torch.tensor(1e-7)'],
  ['scalar int64', () => Tensor.from(7, { dtype: 'int64' }), 'torch.tensor(7)'],
  ['scalar bool', () => Tensor.from(true), 'torch.tensor(True)'],
  ['scalar float16', () => Tensor.from(1.5, { dtype: 'float16' }), 'torch.tensor(1.5, dtype=torch.float16)'],
  ['wide range', () => Tensor.from([1e-5, 1, 12345.678]), 'torch.tensor([1e-5, 1., 12345.678])'],
  ['large values', () => Tensor.from([1.5e9, -2]), 'torch.tensor([1.5e9, -2.])'],
  ['large integer-valued', () => Tensor.from([1e9, 1]), 'torch.tensor([1e9, 1.])'],
  ['tiny values', () => Tensor.from([1e-5, -2e-5]), 'torch.tensor([1e-5, -2e-5])'],
  ['nan and inf', () => Tensor.from([NaN, Infinity, -Infinity, 1.5, 0]), "torch.tensor([float('nan'), float('inf'), float('-inf'), 1.5, 0.])"],
  ['integer-valued with nan', () => Tensor.from([1, NaN]), "torch.tensor([1., float('nan')])"],
  ['only non-finite', () => Tensor.from([Infinity, 0]), "torch.tensor([float('inf'), 0.])"],
  ['negative zero', () => Tensor.from([-0, 1.5]), 'torch.tensor([-0.0, 1.5])'],
  ['negative zero, integer-valued', () => Tensor.from([-0, 2]), 'torch.tensor([-0.0, 2.])'],
  ['scalar negative zero', () => Tensor.from(-0), 'torch.tensor(-0.0)'],
  ['rounding ties to even', () => Tensor.from([0.03125, 0.15625, 1.03125]), 'torch.tensor([0.03125, 0.15625, 1.03125])'],
  ['3d', () => Tensor.from([[[1.5, 2], [3, 4]], [[5, 6], [7, -8.25]]]), 'torch.tensor([[[1.5, 2.], [3., 4.]], [[5., 6.], [7., -8.25]]])'],
  ['empty', () => Tensor.from([]), 'torch.tensor([])'],
  ['empty 2x0', () => Tensor.from([[], []]), 'torch.zeros(2, 0)'],
  ['empty int64', () => Tensor.from([], { dtype: 'int64' }), 'torch.tensor([], dtype=torch.int64)'],
  ['empty bool 0x3', () => Tensor.from(new Uint8Array(0), { shape: [0, 3], dtype: 'bool' }), 'torch.zeros(0, 3, dtype=torch.bool)'],
];

/** [name, Python expression of a seeded tensor]: its values come back, JS rebuilds it. */
const REPR_GENERATED: Array<[string, string]> = [
  ['2000 elements (summarized)', 'torch.randn(2000, generator=g)'],
  ['2000 int64 (summarized)', 'torch.arange(2000)'],
  ['summarized 2d', 'torch.randn(40, 50, generator=g)'],
  ['summarized 2d, short rows', 'torch.randn(400, 3, generator=g)'],
  ['summarized 3d', 'torch.randn(10, 20, 30, generator=g)'],
  ['summarized, wide range', 'torch.randn(1500, generator=g).exp() * 1e-3'],
  ['summarized float16', 'torch.randn(1200, generator=g).half()'],
  ['summarized bool', 'torch.randn(1001, generator=g) > 0'],
  ['100 elements (wrapped lines)', 'torch.randn(100, generator=g)'],
  ['wrapped rows', 'torch.randn(3, 30, generator=g)'],
  ['wrapped, wide range', 'torch.randn(25, generator=g).exp() * 1e-3'],
  ['float16 (dtype on its own line)', 'torch.randn(20, generator=g).half()'],
  ['float16 one line', 'torch.randn(6, generator=g).half()'],
  ['int64 wrapped', 'torch.randint(-1000, 1000, (50,), generator=g)'],
  ['float64 2d', 'torch.randn(4, 9, generator=g).double()'],
  ['bfloat16 2d', 'torch.randn(3, 4, generator=g).bfloat16()'],
  ['integer-valued floats wrapped', 'torch.randint(-50, 50, (40,), generator=g).float()'],
];

// ---- the oracle: one Python run for the whole file ---------------------------------------------

interface Packed {
  t: OracleTensor;
  dtype: string;
}
type PackedOut = Packed | Packed[] | { error: string };

interface Ref {
  inputs: Record<string, OracleTensor>;
  cases: Record<string, PackedOut>;
  from: Record<string, { t: OracleTensor; dtype: string; list: unknown; item?: number | boolean }>;
  reprLit: string[];
  reprGen: Array<{ t: OracleTensor; dtype: string; repr: string }>;
  errors: Record<string, string | null>;
}

/** Bad-dim calls: [name, JS call, Python call, op name in our message]; PyTorch's message gives the range. */
const BAD_DIMS: Array<[string, (t: In) => unknown, string, string]> = [
  ['softmax', (t) => t.a.softmax(2), 'a.softmax(2)', 'softmax'],
  ['logSoftmax', (t) => t.a.logSoftmax(-3), 'a.log_softmax(-3)', 'logSoftmax'],
  ['sum', (t) => t.a.sum(5), 'a.sum(5)', 'sum'],
  ['sum list', (t) => t.x.sum([0, 3]), 'x.sum((0, 3))', 'sum'],
  ['mean', (t) => t.a.mean(-3), 'a.mean(-3)', 'mean'],
  ['max', (t) => t.a.max(2), 'a.max(2)', 'max'],
  ['min', (t) => t.a.min(-3, true), 'a.min(-3, keepdim=True)', 'min'],
  ['argmax', (t) => t.a.argmax(2), 'a.argmax(2)', 'argmax'],
  ['norm', (t) => t.a.norm(2, 3), 'a.norm(2, 3)', 'norm'],
  ['topk', (t) => t.a.topk(1, 2), 'a.topk(1, 2)', 'topk'],
  ['transpose', (t) => t.a.transpose(0, 2), 'a.transpose(0, 2)', 'transpose'],
  ['squeeze', (t) => t.a.squeeze(3), 'a.squeeze(3)', 'squeeze'],
  ['unsqueeze', (t) => t.a.unsqueeze(4), 'a.unsqueeze(4)', 'unsqueeze'],
  ['flatten', (t) => t.x.flatten(0, 3), 'x.flatten(0, 3)', 'flatten'],
  ['permute', (t) => t.a.permute(0, 2), 'a.permute(0, 2)', 'permute'],
  ['cosineSimilarity', (t) => t.a.cosineSimilarity(t.b, 2), 'torch.cosine_similarity(a, b, 2)', 'cosineSimilarity'],
  ['cat', (t) => Tensor.cat([t.a, t.b], 2), 'torch.cat([a, b], 2)', 'cat'],
  ['stack', (t) => Tensor.stack([t.a, t.b], -4), 'torch.stack([a, b], -4)', 'stack'],
];

const PY_CODE = `
import json
${PY_INPUTS}
I['j'] = torch.tensor(${lit(J_DATA)}, dtype=torch.float32)
scope = dict(I)
scope['torch'] = torch
def ip(t, f):
    f(t)
    return t
scope['ip'] = ip
def pack(v):
    if isinstance(v, torch.Tensor):
        return {'t': v, 'dtype': str(v.dtype)[6:]}
    if isinstance(v, tuple):
        return [pack(x) for x in v]
    raise TypeError(type(v))
cases = {}
for name, expr in json.loads(${JSON.stringify(JSON.stringify([...OP_CASES, ...NATIVE_BUG_CASES].map(([n, , p]) => [n, p])))}):
    try:
        cases[name] = pack(eval(expr, scope))
    except Exception as e:
        cases[name] = {'error': str(e)}
frm = {}
for name, data, dt in ${lit([
  ...FROM_DTYPES.map((d) => [`float:${d}`, DATA_FOR(d), d]),
  ['big:int64', BIG_INT_DATA, 'int64'],
  ...['int64', 'int32', 'float32', 'float64'].map((d) => [`int:${d}`, INT_DATA, d]),
  ['uint8:uint8', U8_DATA, 'uint8'],
  ['bool:bool', BOOL_DATA, 'bool'],
  ['bool:float32', BOOL_DATA, 'float32'],
  ['scalar:float32', 2.75, 'float32'],
  ['scalar:int64', -4, 'int64'],
  ['scalar:bool', true, 'bool'],
  ['scalar:float16', 0.1, 'float16'],
])}:
    t = torch.tensor(data, dtype=getattr(torch, dt))
    frm[name] = {'t': t, 'dtype': str(t.dtype)[6:], 'list': t.tolist(), 'item': t.item() if t.numel() == 1 else None}
g = torch.Generator().manual_seed(99)
repr_lit = [repr(eval(e, scope)) for e in json.loads(${JSON.stringify(JSON.stringify(REPR_LITERALS.map(([, , p]) => p)))})]
repr_gen = []
for e in json.loads(${JSON.stringify(JSON.stringify(REPR_GENERATED.map(([, p]) => p)))}):
    t = eval(e, {'torch': torch, 'g': g})
    repr_gen.append({'t': t, 'dtype': str(t.dtype)[6:], 'repr': repr(t)})
errors = {}
for name, expr in json.loads(${JSON.stringify(JSON.stringify(BAD_DIMS.map(([n, , p]) => [n, p])))}):
    try:
        eval(expr, scope)
        errors[name] = None
    except Exception as e:
        errors[name] = str(e).split('\\n')[0]
for name, expr in [('index 4', 'a[4]'), ('index :, 5', 'a[:, 5]'), ('index -5', 'a[-5]'), ('index 0, 0, 8', 'x[0, 0, 8]'), ('too many', 'a[0, 0, 0]'), ('add shapes', 'a + torch.zeros(4, 4)'), ('matmul shapes', 'a @ a')]:
    try:
        eval(expr, scope)
        errors[name] = None
    except Exception as e:
        errors[name] = str(e).split('\\n')[0]
result = {'inputs': I, 'cases': cases, 'from': frm, 'reprLit': repr_lit, 'reprGen': repr_gen, 'errors': errors}
`;

let cached: Ref | undefined;
const REF = (): Ref => (cached ??= oracle<Ref>(null, PY_CODE));

/** A JS Tensor with an oracle tensor's values and the given dtype. */
function fromOracle(o: OracleTensor, dtype: string): Tensor {
  const data = o.data.map(num);
  if (dtype === 'int64') return Tensor.from(BigInt64Array.from(data, (v) => BigInt(v)), { shape: o.shape });
  if (dtype === 'float32') return Tensor.from(Float32Array.from(data), { shape: o.shape });
  return Tensor.from(Float64Array.from(data), { shape: o.shape, dtype: dtype as Dtype });
}

let inputs: In | undefined;
function IN(): In {
  if (inputs) return inputs;
  const r = REF();
  const mk = (k: string) => fromOracle(r.inputs[k], k === 'ia' || k === 'ib' ? 'int64' : 'float32');
  inputs = {
    a: mk('a'), b: mk('b'), r: mk('r'), c: mk('c'), p: mk('p'), m: mk('m'), x: mk('x'), w: mk('w'), ia: mk('ia'), ib: mk('ib'),
    j: Tensor.from(J_DATA),
  };
  return inputs;
}

function expectPacked(actual: Tensor, expected: Packed, tol: number): void {
  expect(actual.dtype).toBe(expected.dtype);
  const exact = ['int64', 'int32', 'int16', 'int8', 'uint8', 'bool'].includes(expected.dtype);
  expectClose(actual, expected.t, exact ? 0 : tol, exact ? 0 : tol);
}

/** Runs one case and compares it with PyTorch's result (or PyTorch's refusal). */
function runCase([name, fn, , tol]: Case): void {
  const expected = REF().cases[name];
  const before = IN().a.toArray();
  if (!Array.isArray(expected) && 'error' in expected) {
    // PyTorch refuses this call: so must we, with an Error
    expect(() => fn(IN()), `PyTorch raised: ${expected.error}`).toThrow(Error);
    return;
  }
  const out = fn(IN());
  if (Array.isArray(expected)) {
    const pair = out as { values: Tensor; indices: Tensor };
    expect(Object.keys(pair).sort()).toEqual(['indices', 'values']);
    expectPacked(pair.values, expected[0], tol ?? 1e-5);
    expectPacked(pair.indices, expected[1], 0);
  } else {
    expect(out).toBeInstanceOf(Tensor);
    expectPacked(out as Tensor, expected as Packed, tol ?? 1e-5);
  }
  // no op changed its input
  expect(IN().a.toArray()).toEqual(before);
}

// ---- tests ------------------------------------------------------------------------------------

describe('the JS-made input reaches PyTorch unchanged', () => {
  it('j in Python equals j here', () => {
    const r = REF();
    expectClose(IN().j, r.inputs.j, 0, 0);
    expectClose(IN().a, r.inputs.a, 0, 0);
  });
});

describe('ops against PyTorch', () => {
  it('PyTorch accepts every case of the table', () => {
    const failed = OP_CASES.filter(([n]) => 'error' in (REF().cases[n] as object)).map(([n]) => `${n}: ${(REF().cases[n] as { error: string }).error}`);
    expect(failed).toEqual([]);
  });

  it.each(OP_CASES.map((c) => [c[0], c] as const))('%s', (_name, c) => runCase(c));

  it('in-place ops return the same Tensor, changed, and keep its dtype', () => {
    const t = IN().a.clone();
    const ops: Array<[string, (u: Tensor) => Tensor]> = [
      ['copy_', (u) => u.copy_(IN().b)],
      ['add_', (u) => u.add_(1)],
      ['sub_', (u) => u.sub_(IN().r)],
      ['mul_', (u) => u.mul_(2)],
      ['div_', (u) => u.div_(IN().p)],
      ['fill_', (u) => u.fill_(3)],
      ['zero_', (u) => u.zero_()],
    ];
    for (const [, f] of ops) {
      const r = f(t);
      expect(r).toBe(t);
      expect(t.dtype).toBe('float32');
      expect(t.shape).toEqual([4, 5]);
    }
    // the end state equals PyTorch's for the same sequence
    const expected = REF().cases['zero_'] as Packed;
    expectPacked(t, expected, 0);
  });

  it('views share storage: writing through index() changes the base, and index() of a view too', () => {
    const t = IN().a.clone();
    const col = t.index(':, 0');
    col.fill_(0);
    expectPacked(t, REF().cases["index(':, 0').fill_(0)"] as Packed, 0);
    // and the base's change is seen through the view
    t.index('0').fill_(9);
    expect(col.toArray()).toEqual([9, 0, 0, 0]);
  });

  it('eager ops leave the live tensor alone unless in place (clone/detach/contiguous)', () => {
    const a = IN().a;
    const c = a.clone();
    c.fill_(1);
    expectClose(a, REF().inputs.a, 0, 0);
    const d = a.clone().detach();
    d.zero_();
    expectClose(a, REF().inputs.a, 0, 0);
  });
});

describe('Tensor.from', () => {
  const check = (t: Tensor, key: string) => {
    const ref = REF().from[key];
    expect(t.dtype).toBe(ref.dtype);
    expect(t.shape).toEqual(ref.t.shape);
    expect(t.toArray()).toEqual(ref.list);
    expectClose(t, ref.t, 0, 0);
  };

  it.each(FROM_DTYPES)('nested arrays with dtype %s equal torch.tensor(data, dtype=...)', (dtype) => {
    check(Tensor.from(DATA_FOR(dtype), { dtype }), `float:${dtype}`);
  });

  it.each(['int64', 'int32', 'float32', 'float64'] as Dtype[])('integers with dtype %s', (dtype) => {
    check(Tensor.from(INT_DATA, { dtype }), `int:${dtype}`);
  });

  it('numbers default to float32, booleans to bool', () => {
    check(Tensor.from(FROM_DATA), 'float:float32');
    check(Tensor.from(BOOL_DATA), 'bool:bool');
    check(Tensor.from(BOOL_DATA, { dtype: 'float32' }), 'bool:float32');
    check(Tensor.from(U8_DATA, { dtype: 'uint8' }), 'uint8:uint8');
  });

  it('scalars: shape [], item()', () => {
    const cases: Array<[Tensor, string]> = [
      [Tensor.from(2.75), 'scalar:float32'],
      [Tensor.from(-4, { dtype: 'int64' }), 'scalar:int64'],
      [Tensor.from(true), 'scalar:bool'],
      [Tensor.from(0.1, { dtype: 'float16' }), 'scalar:float16'],
    ];
    for (const [t, key] of cases) {
      check(t, key);
      expect(t.shape).toEqual([]);
      expect(t.item()).toBe(REF().from[key].item);
    }
    // a one-element tensor of any shape has an item
    expect(Tensor.from([[2.75]]).item()).toBe(REF().from['scalar:float32'].item);
  });

  it('typed arrays with shape; the array kind sets the default dtype', () => {
    const flat = FROM_DATA.flat();
    check(Tensor.from(Float32Array.from(flat), { shape: [2, 4] }), 'float:float32');
    check(Tensor.from(Float64Array.from(flat), { shape: [2, 4], dtype: 'float32' }), 'float:float32');
    check(Tensor.from(Float64Array.from(flat), { shape: [2, 4], dtype: 'float16' }), 'float:float16');
    check(Tensor.from(Float64Array.from(flat), { shape: [2, 4], dtype: 'bfloat16' }), 'float:bfloat16');
    const i = INT_DATA.flat();
    check(Tensor.from(BigInt64Array.from(i, BigInt), { shape: [2, 4] }), 'int:int64');
    check(Tensor.from(Int32Array.from(i), { shape: [2, 4] }), 'int:int32');
    check(Tensor.from(Int32Array.from(i), { shape: [2, 4], dtype: 'int64' }), 'int:int64');
    check(Tensor.from(BigInt64Array.from(BIG_INT_DATA, BigInt)), 'big:int64');
    check(Tensor.from(BIG_INT_DATA, { dtype: 'int64' }), 'big:int64');
    expect(Tensor.from(Float64Array.of(1, 2)).dtype).toBe('float64');
    check(Tensor.from(Uint8Array.from(U8_DATA)), 'uint8:uint8');
    check(Tensor.from(Uint8Array.from(BOOL_DATA.flat(), Number), { shape: [2, 3], dtype: 'bool' }), 'bool:bool');
    // without shape: one dimension; a subarray starts at its own offset
    const big = Float32Array.from([9, 9, ...flat]);
    check(Tensor.from(big.subarray(2), { shape: [2, 4] }), 'float:float32');
    expect(Tensor.from(Float32Array.of(1, 2, 3)).shape).toEqual([3]);
    // nested arrays with a shape are reshaped
    check(Tensor.from(flat, { shape: [2, 4] }), 'float:float32');
    // data are copied: changing the source later leaves the tensor alone
    const src = Float32Array.from(flat);
    const t = Tensor.from(src, { shape: [2, 4] });
    src.fill(0);
    check(t, 'float:float32');
  });

  it('data() returns a host copy of the documented typed-array kind', () => {
    const kinds: Array<[Dtype, new (...a: any[]) => ArrayBufferView]> = [
      ['float32', Float32Array],
      ['float16', Float32Array],
      ['bfloat16', Float32Array],
      ['float64', Float64Array],
      ['int64', BigInt64Array],
      ['int32', Int32Array],
      ['uint8', Uint8Array],
      ['bool', Uint8Array],
    ];
    for (const [dtype, kind] of kinds) {
      const data = dtype === 'bool' ? BOOL_DATA : DATA_FOR(dtype);
      const t = Tensor.from(data, { dtype });
      const d = t.data();
      expect(d, dtype).toBeInstanceOf(kind);
      expect(d.length).toBe(t.numel);
      // a copy: writing to it does not change the tensor
      const before = t.toArray();
      (d as any).fill(typeof (d as any)[0] === 'bigint' ? 0n : 0);
      expect(t.toArray()).toEqual(before);
    }
    // the values of data() are the flat PyTorch values
    expect(Array.from(Tensor.from(FROM_DATA, { dtype: 'float16' }).data() as Float32Array)).toEqual(REF().from['float:float16'].t.data);
    expect(Array.from(Tensor.from(INT_DATA, { dtype: 'int64' }).data() as BigInt64Array, Number)).toEqual(REF().from['int:int64'].t.data);
  });

  it('toArray gives nested arrays like tolist(); shape, dtype and device', () => {
    const t = Tensor.from(FROM_DATA, { dtype: 'float64' });
    expect(t.toArray()).toEqual(REF().from['float:float64'].list);
    expect(t.shape).toEqual([2, 4]);
    expect(t.dtype).toBe('float64');
    expect(t.device).toBe('cpu');
    expect(Tensor.from([]).shape).toEqual([0]);
    expect(Tensor.from([]).toArray()).toEqual([]);
    expect(Tensor.from([[], []]).shape).toEqual([2, 0]);
    expect(Tensor.from([[], []]).toArray()).toEqual([[], []]);
    expect(Tensor.from(5).toArray()).toBe(5);
    expect(Tensor.from([[[1]], [[2]]]).toArray()).toEqual([[[1]], [[2]]]);
    expect(JSON.stringify(Tensor.from([[1, 2]]))).toBe('[[1,2]]');
  });

  it('rejects ragged and invalid input with clear messages', () => {
    expect(() => Tensor.from([[1, 2], [3]])).toThrow(/ragged.*\[1\].*expected 2/);
    expect(() => Tensor.from([[1], [2, 3]])).toThrow(/ragged/);
    expect(() => Tensor.from([[[1, 2]], [[3]]])).toThrow(/ragged.*\[1\]\[0\]/);
    expect(() => Tensor.from([1, [2]] as any)).toThrow(/Tensor\.from: element \[1\]/);
    expect(() => Tensor.from([1, 'a'] as any)).toThrow(/element \[1\] is string, expected a number/);
    expect(() => Tensor.from([1, null] as any)).toThrow(/element \[1\] is null/);
    expect(() => Tensor.from([[1, undefined]] as any)).toThrow(/element \[0\]\[1\] is undefined/);
    expect(() => Tensor.from('abc' as any)).toThrow(/Tensor\.from: .*string/);
    expect(() => Tensor.from({} as any)).toThrow(/Tensor\.from/);
    expect(() => Tensor.from([1, 2, 3], { shape: [2, 2] })).toThrow(/shape \[2, 2\] needs 4 values, got 3/);
    expect(() => Tensor.from(new Float32Array(3), { shape: [2, 2] })).toThrow(/shape \[2, 2\] needs 4 values, got 3/);
    expect(() => Tensor.from([1, 2, 3, 4], { shape: [-2, -2] })).toThrow(/shape must be .*non-negative integers/);
    expect(() => Tensor.from(new Float32Array(6), { shape: [2.5, 2] })).toThrow(/non-negative integers/);
    expect(() => Tensor.from([1], { dtype: 'float8' as Dtype })).toThrow(/unknown dtype 'float8'.*float32/);
    expect(() => Tensor.from([1], { dtype: 3 as any })).toThrow(/dtype must be a string/);
    expect(() => Tensor.from([1], { device: 'tpu' })).toThrow(/unknown device 'tpu'/);
    expect(() => Tensor.from(new Uint16Array(3) as any)).toThrow(/unsupported typed array/);
    let deep: any = 1;
    for (let i = 0; i < 40; i++) deep = [deep];
    expect(() => Tensor.from(deep)).toThrow(/at most 16 dimensions/);
  });

  it('item() needs exactly one element', () => {
    expect(() => Tensor.from([1, 2]).item()).toThrow(/item\(\).*one element.*\[2\]/);
    expect(() => Tensor.from([]).item()).toThrow(/one element.*\[0\]/);
    expect(Tensor.from([[[4.5]]]).item()).toBe(4.5);
  });

  it('dispose() frees; any later use throws /disposed/', () => {
    const t = Tensor.from([1, 2, 3]);
    const other = Tensor.from([1, 1, 1]);
    t.dispose();
    expect(t.disposed).toBe(true);
    expect(() => t.shape).toThrow(/disposed/);
    expect(() => t.dtype).toThrow(/disposed/);
    expect(() => t.item()).toThrow(/disposed/);
    expect(() => t.data()).toThrow(/disposed/);
    expect(() => t.toArray()).toThrow(/disposed/);
    expect(() => t.add(1)).toThrow(/disposed/);
    expect(() => t.add_(1)).toThrow(/disposed/);
    expect(() => t.index('0')).toThrow(/disposed/);
    expect(() => other.add(t)).toThrow(/disposed/);
    expect(() => Tensor.cat([other, t])).toThrow(/disposed/);
    t.dispose(); // twice is fine
    expect(String(t)).toMatch(/disposed/);
    // the other tensor is unaffected
    expect(other.add(1).toArray()).toEqual([2, 2, 2]);
  });

  it('a view outlives the disposed base', () => {
    const base = Tensor.from(FROM_DATA);
    const row = base.index('1');
    base.dispose();
    expect(row.toArray()).toEqual((REF().from['float:float32'].list as number[][])[1]);
  });

  it('[Symbol.dispose] with using', () => {
    let escaped: Tensor | undefined;
    {
      using t = Tensor.from([1, 2]);
      escaped = t;
      expect(t.shape).toEqual([2]);
    }
    expect(escaped.disposed).toBe(true);
    expect(() => escaped!.item()).toThrow(/disposed/);
    const u = Tensor.from([1]);
    u[Symbol.dispose]();
    expect(() => u.shape).toThrow(/disposed/);
  });
});

describe('toString() equals repr(tensor) in PyTorch 1.13', () => {
  it.each(REPR_LITERALS.map((c, i) => [c[0], i] as const))('%s', (_name, i) => {
    const t = REPR_LITERALS[i][1]();
    expect(t.toString()).toBe(REF().reprLit[i]);
    expect(String(t)).toBe(REF().reprLit[i]);
    expect(`${t}`).toBe(REF().reprLit[i]);
  });

  it.each(REPR_GENERATED.map((c, i) => [c[0], i] as const))('%s', (_name, i) => {
    const g = REF().reprGen[i];
    const t = fromOracle(g.t, g.dtype);
    expect(t.dtype).toBe(g.dtype);
    expect(t.toString()).toBe(g.repr);
  });

  it('op results print like PyTorch too', () => {
    // the results of the ops above, printed, equal PyTorch's prints of the same values
    const r = REF();
    for (const name of ['add tensor', 'int div is true division', 'half', 'argmax dim', "index '0, 0, 0' (a scalar)", 'log of negatives is nan']) {
      const c = OP_CASES.find((x) => x[0] === name)!;
      const out = c[1](IN()) as Tensor;
      const again = fromOracle((r.cases[name] as Packed).t, (r.cases[name] as Packed).dtype);
      expect(out.toString()).toBe(again.toString());
    }
  });
});

describe('errors: thrown, clear, and the tensors still work after', () => {
  it('shape mismatch names both shapes', () => {
    const { a } = IN();
    const bad = Tensor.from(new Float32Array(16), { shape: [4, 4] });
    expect(REF().errors['add shapes']).toBeTruthy(); // PyTorch refuses it too
    expect(() => a.add(bad)).toThrow(/^add: .*\[4, 5\].*\[4, 4\]/);
    expect(() => a.sub(bad)).toThrow(/^sub: .*\[4, 5\].*\[4, 4\]/);
    expect(() => a.mul(bad)).toThrow(/^mul: .*\[4, 5\].*\[4, 4\]/);
    expect(() => a.div(bad)).toThrow(/^div: .*\[4, 5\].*\[4, 4\]/);
    expect(() => a.clone().add_(bad)).toThrow(/^add_: .*\[4, 5\].*\[4, 4\]/);
    expect(() => a.clone().copy_(bad)).toThrow(/^copy_: .*\[4, 5\].*\[4, 4\]/);
    expect(REF().errors['matmul shapes']).toBeTruthy();
    expect(() => a.matmul(a)).toThrow(/^matmul: .*4x5 and 4x5/);
    expect(() => Tensor.cat([a, Tensor.from([1, 2])])).toThrow(/^cat: /);
    expect(() => Tensor.stack([a, IN().m])).toThrow(/^stack: .*\[4, 5\].*\[5, 3\]/);
    expect(() => a.view(3, 7)).toThrow(/^view: .*\[3, 7\].*20/);
  });

  it.each(BAD_DIMS.map((c) => [c[0], c] as const))('bad dim in %s names the op and PyTorch\'s valid range', (_n, [name, fn, , op]) => {
    const pyMsg = REF().errors[name];
    expect(pyMsg, 'PyTorch accepts this call').toBeTruthy();
    const range = /\[(-?\d+), (-?\d+)\]/.exec(pyMsg!)!;
    expect(range, `no range in PyTorch's message: ${pyMsg}`).toBeTruthy();
    let msg = '';
    try {
      fn(IN());
    } catch (e) {
      expect(e).toBeInstanceOf(Error);
      msg = (e as Error).message;
    }
    expect(msg.startsWith(`${op}: `), msg).toBe(true);
    expect(msg).toContain(range[0]);
  });

  it('index out of range, where PyTorch raises too', () => {
    const { a, x } = IN();
    const cases: Array<[string, () => unknown, RegExp]> = [
      ['index 4', () => a.index('4'), /index 4 is out of range for dimension 0 of size 4/],
      ['index :, 5', () => a.index(':, 5'), /index 5 is out of range for dimension 1 of size 5/],
      ['index -5', () => a.index('-5'), /index -5 is out of range for dimension 0 of size 4/],
      ['index 0, 0, 8', () => x.index('0, 0, 8'), /index 8 is out of range for dimension 2 of size 8/],
      ['too many', () => a.index('0, 0, 0'), /too many indices \(3\).*\[4, 5\]/],
    ];
    for (const [name, f, re] of cases) {
      expect(REF().errors[name], name).toBeTruthy();
      expect(f).toThrow(re);
    }
    expect(() => a.index([null, 7])).toThrow(/index 7 is out of range/);
    expect(() => a.index('..., 9')).toThrow(/index 9 is out of range for dimension 1/);
  });

  it('malformed index specs', () => {
    const { a } = IN();
    expect(() => a.index('a')).toThrow(/index 'a': 'a' is not an integer/);
    expect(() => a.index('0:2:0')).toThrow(/step must be positive/);
    expect(() => a.index('::-1')).toThrow(/step must be positive/);
    expect(() => a.index('1:2:3:4')).toThrow(/bad slice/);
    expect(() => a.index('..., ..., 0')).toThrow(/only one '\.\.\.'/);
    expect(() => a.index('0,,1')).toThrow(/empty item/);
    expect(() => a.index(', 1')).toThrow(/empty item/);
    expect(() => a.index([null, 1.5])).toThrow(/\[null, 1\.5\]: 1\.5 is not an integer/);
    expect(() => a.index([{}] as any)).toThrow(/unsupported item/);
    expect(() => a.index(5 as any)).toThrow(/index spec must be a string/);
    expect(() => a.index(':, 100000000000000000000')).toThrow(/too large/);
  });

  it('wrong argument types', () => {
    const { a, b } = IN();
    const cases: Array<[() => unknown, RegExp]> = [
      [() => a.add('x' as any), /^add: argument 'other' must be a tensor; got string 'x'/],
      [() => a.add(b, 'x' as any), /^add: argument 'alpha' must be a number/],
      [() => a.sub(b, [1] as any), /^sub: argument 'alpha' must be a number/],
      [() => a.clone().add_(b, 'x' as any), /^add_: argument 'alpha' must be a number/],
      [() => a.mul([1, 2] as any), /^mul: argument 'other' must be a tensor/],
      [() => a.pow('2' as any), /^pow: argument 'exponent'/],
      [() => a.matmul(3 as any), /^matmul: argument 'other' must be a tensor; got int 3/],
      [() => a.softmax('1' as any), /^softmax: argument 'dim' must be an integer/],
      [() => a.softmax(1.5), /^softmax: argument 'dim' must be an integer; got number 1\.5/],
      [() => (a as any).softmax(), /^softmax: expected 2 arguments, got 1/],
      [() => a.sum('x' as any), /^sum: argument 'dim'/],
      [() => a.mean([0, 'x'] as any), /^mean: argument 'dim'/],
      [() => a.norm('fro' as any), /^norm: argument 'p' must be a number/],
      [() => a.topk(1.5), /^topk: argument 'k' must be an integer/],
      [() => a.topk(9), /^topk: argument 'k' must be in \[0, 5\]/],
      [() => a.topk(2, 1, 'yes' as any), /^topk: argument 'largest' must be a boolean/],
      [() => a.reshape('a' as any), /^reshape: argument 'shape'/],
      [() => a.reshape(2.5, 2), /^reshape: argument 'shape'/],
      [() => a.permute('a' as any, 'b' as any), /^permute: argument 'dims'/],
      [() => a.clone().fill_('a' as any), /^fill_: argument 'value' must be a number; got string 'a'/],
      [() => a.clone().copy_(3 as any), /^copy_: argument 'src' must be a tensor; got int 3/],
      [() => a.to('nonsense'), /^to: unknown dtype 'nonsense'/],
      [() => a.to(3 as any), /^to: argument 'dtype_or_device'/],
      [() => a.to('cuda:x'), /^to: unknown device 'cuda:x'/],
      [() => a.cosineSimilarity(3 as any), /^cosineSimilarity: argument 'other' must be a tensor/],
      [() => a.mean({ dims: 1 } as any), /^mean: unknown option 'dims' \(options: dim, keepdim\)/],
      [() => a.mean(1, { dim: 1 } as any), /^mean: 'dim' given twice/],
      [() => (a as any).neg(1), /^neg: expected at most 0 argument/],
      [() => (a as any).transpose(0), /^transpose: expected 3 arguments, got 2/],
      [() => Tensor.cat([a, 3 as any]), /^Tensor\.cat: item 1 is not a Tensor/],
      [() => Tensor.cat([]), /^Tensor\.cat: expected a non-empty array/],
      [() => Tensor.stack('ab' as any), /^Tensor\.stack: expected a non-empty array/],
      [() => a.unsqueeze(Infinity), /^unsqueeze: argument 'dim' must be an integer/],
      [() => a.sum(NaN), /^sum: argument 'dim'/],
      [() => a.view(-1, -1), /^view: only one dimension can be inferred/],
      [() => a.reshape(1e10), /^reshape: .*invalid for input of size 20/],
      [() => Tensor.from([]).argmax(), /^argmax: /],
      [() => Tensor.from([]).max(), /^max: /],
      [() => Tensor.from([1, 2, 3], { dtype: 'int64' }).add_(0.5), /^add_: .*can't be cast/],
    ];
    for (const [f, re] of cases) {
      let err: unknown;
      try {
        f();
      } catch (e) {
        err = e;
      }
      expect(err, String(re)).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(re);
    }
  });

  it('after all those errors the tensors still work', () => {
    const r = REF();
    expectClose(IN().a, r.inputs.a, 0, 0);
    expectPacked(IN().a.add(IN().b), r.cases['add tensor'] as Packed, 1e-5);
    expectPacked(IN().x.index(':, -1'), r.cases["index ':, -1'"] as Packed, 0);
    const t = IN().a.clone();
    expect(() => t.add_(Tensor.from([1, 2]))).toThrow();
    // a failed in-place op left the tensor as it was
    expectClose(t, r.inputs.a, 0, 0);
    t.add_(IN().b);
    expectPacked(t, r.cases['add_'] as Packed, 1e-5);
  });
});

describe('on CUDA (only where the addon sees a GPU)', () => {
  const cuda = runtimeInfo().cudaAvailable;
  it.skipIf(!cuda)('tensors move to the GPU and back; ops give the CPU results; repr names the device', () => {
    const a = IN().a;
    const g = a.to('cuda');
    expect(g.device).toBe('cuda:0');
    expect(Tensor.from([1, 2], { device: 'cuda' }).device).toBe('cuda:0');
    expectPacked(g.add(IN().b).to('cpu'), REF().cases['add tensor'] as Packed, 1e-5);
    expectPacked(g.softmax(-1), REF().cases['softmax'] as Packed, 1e-5);
    // a host tensor is moved to the GPU operand's device
    expectPacked(g.clone().add_(IN().b), REF().cases['add_'] as Packed, 1e-5);
    expect(g.toString()).toBe(a.toString().replace(/\)$/, ", device='cuda:0')"));
  });
  it.skipIf(cuda)('without a GPU, asking for one is a clear error', () => {
    expect(() => IN().a.to('cuda')).toThrow(/^to: device 'cuda' asked for, but CUDA is not available/);
    expect(() => Tensor.from([1], { device: 'cuda:0' })).toThrow(/CUDA is not available/);
  });
});

describe('in-place promotion and norm keepdim, as in PyTorch', () => {
  for (const c of NATIVE_BUG_CASES) it(`${c[0]} (native/ops.cpp: ${c[4]})`, () => runCase([c[0], c[1], c[2], c[3]]));
});
