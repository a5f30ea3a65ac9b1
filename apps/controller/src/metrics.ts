/** The controller's Prometheus metrics (one registry per controller instance). */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export interface AgentView {
  hostId: string;
  connected: boolean;
  version: number;
  acked: number;
  pendingEntries: number;
}

export function createMetrics(agents: () => Iterable<AgentView>, revision: () => number, pendingActivations: () => number, databaseUp: () => boolean) {
  const registry = new Registry();
  const activation = new Histogram({
    name: 'sdn_endpoint_activation_seconds',
    help: 'Commit of an endpoint change in the directory -> last acknowledgement by the hosts that must know it',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [registry],
  });
  const applyLag = new Histogram({
    name: 'sdn_change_apply_lag_seconds',
    help: 'Commit of a change in the directory -> applied by the controller (the part of activation latency before any agent is involved)',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const nacks = new Counter({ name: 'sdn_agent_nacks_total', help: 'Versions rejected by agents', labelNames: ['host'], registers: [registry] });
  const bytes = new Counter({ name: 'sdn_agent_bytes_sent_total', help: 'Bytes sent to agents', labelNames: ['kind'], registers: [registry] });
  const messages = new Counter({ name: 'sdn_agent_messages_sent_total', help: 'Messages sent to agents', labelNames: ['kind'], registers: [registry] });
  const changes = new Counter({ name: 'sdn_controller_changes_applied_total', help: 'Change-log entries applied', registers: [registry] });
  new Gauge({
    name: 'sdn_controller_revision',
    help: 'Last change-log revision applied',
    registers: [registry],
    collect() {
      this.set(revision());
    },
  });
  new Gauge({
    name: 'sdn_controller_database_up',
    help: "1 while the controller's last read of the change log worked; 0 while the database is away (the hosts keep the state they have)",
    registers: [registry],
    collect() {
      this.set(databaseUp() ? 1 : 0);
    },
  });
  new Gauge({
    name: 'sdn_endpoint_activations_pending',
    help: 'Endpoint changes waiting for acknowledgements',
    registers: [registry],
    collect() {
      this.set(pendingActivations());
    },
  });
  const perAgent = (name: string, help: string, value: (a: AgentView) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['host'],
      registers: [registry],
      collect() {
        this.reset();
        for (const a of agents()) this.set({ host: a.hostId }, value(a));
      },
    });
  perAgent('sdn_agent_connected', '1 while the agent of the host is connected', (a) => (a.connected ? 1 : 0));
  perAgent('sdn_agent_version', 'Newest version of the host state sent to the agent', (a) => a.version);
  perAgent('sdn_agent_acked_version', 'Last version the agent acknowledged', (a) => a.acked);
  perAgent('sdn_agent_lag_versions', 'Versions sent and not yet acknowledged', (a) => a.version - a.acked);
  perAgent('sdn_agent_pending_entries', 'Coalesced entry changes waiting to be sent', (a) => a.pendingEntries);
  return { registry, activation, applyLag, nacks, bytes, messages, changes };
}

export type ControllerMetrics = ReturnType<typeof createMetrics>;
