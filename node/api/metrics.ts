// Prometheus metrics of the HTTP API (prom-client), in a registry of their own so that several
// servers in one process (tests) never collide on metric names.
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

export interface ApiMetrics {
  registry: Registry
  requests: Counter<'route' | 'status'>
  tokens: Counter<'kind'>
  latency: Histogram<'route'>
  firstToken: Histogram<'route'>
  errors: Counter<'type'>
}

export function createMetrics (): ApiMetrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'mycelium_' })
  return {
    registry,
    requests: new Counter({ name: 'mycelium_api_requests_total', help: 'HTTP API requests by route and status code', labelNames: ['route', 'status'], registers: [registry] }),
    tokens: new Counter({ name: 'mycelium_api_tokens_total', help: 'Tokens through the API: prompt (tokenized here) and completion (generated)', labelNames: ['kind'], registers: [registry] }),
    latency: new Histogram({
      name: 'mycelium_api_request_duration_seconds',
      help: 'Time from request to the last byte of the response, by route',
      labelNames: ['route'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry]
    }),
    firstToken: new Histogram({
      name: 'mycelium_api_time_to_first_token_seconds',
      help: 'Time from request to the first generated token, by route',
      labelNames: ['route'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry]
    }),
    errors: new Counter({ name: 'mycelium_api_errors_total', help: 'API error responses by OpenAI error type/code', labelNames: ['type'], registers: [registry] })
  }
}
