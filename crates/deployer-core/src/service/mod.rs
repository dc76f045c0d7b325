//! What a service is: the image it tracks and how its containers are created and switched.

mod error;
mod health;
mod name;
mod spec;
mod strategy;
mod template;

pub use error::SpecError;
pub use health::{DEFAULT_WATCH, HealthCheck, Probe};
pub use name::ServiceName;
pub use spec::{MAX_REPLICAS, ServiceSpec, ServiceSpecBuilder, Timeouts};
pub use strategy::{Canary, Handover, Ordering, ProxyProtocol, Strategy};
pub use template::{BuildSpec, ContainerTemplate};
