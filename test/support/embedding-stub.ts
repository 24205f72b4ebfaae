// The loopback embedding provider is shared with bench/, so it lives in harness/.
export * from '../../harness/embedding-stub.js';
