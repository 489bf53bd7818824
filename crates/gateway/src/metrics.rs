//! The gateway's counters, in the daemons' registry (`/metrics`).

use std::sync::Arc;

use pushservice_daemon::{Counter, Gauge, Registry};

/// Counters and gauges of the gateway.
pub struct GatewayMetrics {
    /// Open SSE connections.
    pub sse_connections: Arc<Gauge>,
    /// Open WebSocket connections.
    pub ws_connections: Arc<Gauge>,
    /// Records read from the realtime topic.
    pub messages_read: Arc<Counter>,
    /// Records skipped as invalid.
    pub bad_records: Arc<Counter>,
    /// Errors reading the topic.
    pub read_errors: Arc<Counter>,
    /// Messages queued for connections.
    pub deliveries: Arc<Counter>,
    /// Messages written to connections.
    pub written: Arc<Counter>,
    /// Connections closed for being too slow.
    pub too_slow: Arc<Counter>,
    /// Connections closed by the per-user session cap.
    pub session_limit: Arc<Counter>,
    /// Connections closed for exceeding the client frame rate.
    pub rate_limited: Arc<Counter>,
    /// Acks received.
    pub acks: Arc<Counter>,
    /// Refused tokens.
    pub auth_failures: Arc<Counter>,
    /// Channel recoveries that got everything.
    pub recovered: Arc<Counter>,
    /// Channel recoveries that could not reach back.
    pub not_recovered: Arc<Counter>,
    /// Messages stored in the history.
    pub history_stored: Arc<Counter>,
    /// Messages removed from the stored history.
    pub history_trimmed: Arc<Counter>,
    /// Failed store writes (retried).
    pub store_errors: Arc<Counter>,
}

impl GatewayMetrics {
    /// Counts a connection the gateway closed, by why.
    pub fn closed(&self, reason: crate::hub::CloseReason) {
        match reason {
            crate::hub::CloseReason::TooSlow => self.too_slow.inc(),
            crate::hub::CloseReason::SessionLimit => self.session_limit.inc(),
        }
    }

    /// Registers them.
    pub fn new(registry: &Registry) -> Self {
        let connections = |transport| {
            registry.gauge(
                "pushservice_gateway_connections",
                "Open realtime connections.",
                &[("transport", transport)],
            )
        };
        let counter = |name: &str, help: &str| registry.counter(name, help, &[]);
        GatewayMetrics {
            sse_connections: connections("sse"),
            ws_connections: connections("websocket"),
            messages_read: counter(
                "pushservice_gateway_messages_read_total",
                "Records read from the realtime topic.",
            ),
            bad_records: counter(
                "pushservice_gateway_bad_records_total",
                "Realtime records skipped as invalid or of an unknown site.",
            ),
            read_errors: counter(
                "pushservice_gateway_read_errors_total",
                "Errors reading the realtime topic.",
            ),
            deliveries: counter(
                "pushservice_gateway_deliveries_total",
                "Messages queued for a connection.",
            ),
            written: counter(
                "pushservice_gateway_written_total",
                "Messages written to a connection.",
            ),
            too_slow: counter(
                "pushservice_gateway_too_slow_total",
                "Connections closed because their send queue filled up.",
            ),
            session_limit: counter(
                "pushservice_gateway_session_limit_total",
                "Connections closed by the per-user session cap.",
            ),
            rate_limited: counter(
                "pushservice_gateway_rate_limited_total",
                "Connections closed for sending frames too fast.",
            ),
            acks: counter(
                "pushservice_gateway_acks_total",
                "Message acknowledgements received.",
            ),
            auth_failures: counter(
                "pushservice_gateway_auth_failures_total",
                "Connections refused for their token.",
            ),
            recovered: counter(
                "pushservice_gateway_recoveries_total",
                "Channel recoveries that returned everything missed.",
            ),
            not_recovered: counter(
                "pushservice_gateway_recoveries_failed_total",
                "Channel recoveries answered recovered: false.",
            ),
            history_stored: counter(
                "pushservice_gateway_history_stored_total",
                "Messages stored in the durable history.",
            ),
            history_trimmed: counter(
                "pushservice_gateway_history_trimmed_total",
                "Messages removed from the durable history (size or age).",
            ),
            store_errors: counter(
                "pushservice_gateway_store_errors_total",
                "Failed MongoDB writes of the history recorder (retried).",
            ),
        }
    }
}
