// Prometheus metrics (GET /metrics), each server with its own registry: requests by model, kind
// and status, queue depth, batch sizes, forward time, plus the process's default metrics.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  registry: Registry;
  requests: Counter<'model' | 'kind' | 'status'>;
  queueDepth: Gauge<'model'>;
  batchSize: Histogram<'model'>;
  forwardSeconds: Histogram<'model'>;
}

export function makeMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'torchsight_' });
  return {
    registry,
    requests: new Counter({ name: 'torchsight_requests_total', help: 'Requests answered, by model, kind and HTTP status', labelNames: ['model', 'kind', 'status'], registers: [registry] }),
    queueDepth: new Gauge({ name: 'torchsight_queue_depth', help: 'Requests waiting, by model', labelNames: ['model'], registers: [registry] }),
    batchSize: new Histogram({ name: 'torchsight_batch_size', help: 'Requests run in one forward', labelNames: ['model'], buckets: [1, 2, 4, 8, 16, 32, 64], registers: [registry] }),
    forwardSeconds: new Histogram({
      name: 'torchsight_forward_seconds',
      help: 'Time of a forward (or a generation) with its requests, in seconds',
      labelNames: ['model'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
  };
}
