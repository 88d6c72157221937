//! One-line init, a span and a few log lines.
//!
//! Run with `cargo run --example quickstart`. No collector is needed: export is off unless
//! `OTEL_ENABLED=true`, and every line on stdout is JSON carrying the trace and span ids.
//! Try `OTEL_ENABLED=true OTEL_TRACES_EXPORTER=console` to see the spans on stderr.

use service_telemetry::opentelemetry::{KeyValue, global};
use tracing::{info, info_span, warn};

fn main() {
    let _telemetry = service_telemetry::Telemetry::builder()
        .service_name("quickstart")
        .service_version(env!("CARGO_PKG_VERSION"))
        .init();

    let orders = global::meter("quickstart")
        .u64_counter("orders.placed")
        .with_unit("{order}")
        .build();

    let span = info_span!("checkout", order.id = 42, customer = "ada");
    let _entered = span.enter();
    info!(items = 3, "cart validated");
    orders.add(1, &[KeyValue::new("payment.method", "card")]);
    warn!(retry_in_ms = 250, "payment provider slow, retrying");
    info!(total_cents = 12_99, "order placed");
}
