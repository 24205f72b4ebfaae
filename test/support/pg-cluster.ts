// The cluster harness is shared with bench/, so it lives in harness/.
export * from '../../harness/pg-cluster.js';
