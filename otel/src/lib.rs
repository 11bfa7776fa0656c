//! EUCORA telemetry pipeline. It knows nothing about deployments: it owns the
//! instrument catalog (names, units, labels, buckets), the meter provider
//! bridged into a Prometheus registry, the HTTP shim that serves it, the RPC
//! observability layer, and tracing/log set-up.
//!
//! # Layout
//! - [`catalog`]: every instrument and its typed recording methods.
//! - [`bridge`]: OpenTelemetry SDK → Prometheus metric families, on each scrape.
//! - [`pipeline`]: meter provider → bridge → registry; rendering.
//! - [`http`]: `/metrics`, `/api/v1/metrics/`, `/healthz`, `/readyz`.
//! - [`rpc`]: tower layer recording RPC metrics and a span per call.
//! - [`tracing_setup`]: logs (text/JSON, with trace ids), tracer provider, OTLP.
#![forbid(unsafe_code)]

pub mod bridge;
pub mod catalog;
pub mod http;
pub mod pipeline;
pub mod rpc;
pub mod tracing_setup;

pub use catalog::Catalog;
pub use pipeline::{MetricsPipeline, ServiceIdentity};
