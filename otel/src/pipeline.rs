//! The metrics pipeline: `SdkMeterProvider` → [`crate::bridge`] →
//! `prometheus::Registry`, with the resource (service name,
//! version, instance id) exported as `target_info`, and rendering of the
//! registry in the Prometheus text format.

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, MeterProvider};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{Instrument, SdkMeterProvider, Stream};
use prometheus::{Encoder, Registry, TextEncoder};

use crate::catalog::{APP_SERIES_LIMIT, names};

/// Who is exporting: the resource attributes every series is tied to.
#[derive(Debug, Clone)]
pub struct ServiceIdentity {
    pub name: String,
    pub version: String,
    /// Unique per process (a UUID), so replicas are told apart.
    pub instance_id: String,
}

impl ServiceIdentity {
    /// The OpenTelemetry resource of this process, shared by metrics and traces.
    pub fn resource(&self) -> Resource {
        Resource::builder_empty()
            .with_attributes([
                KeyValue::new("service.name", self.name.clone()),
                KeyValue::new("service.version", self.version.clone()),
                KeyValue::new("service.instance.id", self.instance_id.clone()),
            ])
            .build()
    }
}

/// Errors building or stopping the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("registering the bridge or encoding metrics: {0}")]
    Prometheus(#[from] prometheus::Error),
}

/// A meter provider bridged into a Prometheus registry.
#[derive(Debug, Clone)]
pub struct MetricsPipeline {
    provider: SdkMeterProvider,
    registry: Registry,
}

impl MetricsPipeline {
    /// # Errors
    /// The exporter cannot register with the registry.
    pub fn new(identity: &ServiceIdentity) -> Result<MetricsPipeline, PipelineError> {
        let registry = Registry::new();
        // One scope exports everything: the bridge puts no scope label on the series.
        let (reader, collector) = crate::bridge::bridge();
        registry.register(Box::new(collector))?;
        let provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(identity.resource())
            .with_view(app_name_cardinality)
            .build();
        Ok(MetricsPipeline { provider, registry })
    }

    pub fn meter(&self) -> Meter {
        self.provider.meter("eucora")
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The registry in the text exposition format, with its content type.
    ///
    /// # Errors
    /// Encoding failed (a metric family the encoder rejects).
    pub fn render(&self) -> Result<(String, Vec<u8>), PipelineError> {
        let encoder = TextEncoder::new();
        let families = self.registry.gather();
        let mut body = Vec::with_capacity(64 * 1024);
        encoder.encode(&families, &mut body)?;
        Ok((encoder.format_type().to_owned(), body))
    }

    /// Flushes and stops the provider; later records are dropped.
    pub fn shutdown(&self) {
        if let Err(err) = self.provider.shutdown() {
            tracing::warn!(error = %err, "meter provider shutdown");
        }
    }
}

/// Raises the cardinality limit of instruments that carry `app_name`.
fn app_name_cardinality(instrument: &Instrument) -> Option<Stream> {
    if names::WITH_APP_NAME.contains(&instrument.name()) {
        Stream::builder().with_cardinality_limit(APP_SERIES_LIMIT).build().ok()
    } else {
        None
    }
}
