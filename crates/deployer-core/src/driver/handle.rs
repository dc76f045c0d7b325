//! The driver as seen from outside while it runs: service states for the admin API and the
//! operator's deploy and rollback commands.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::mpsc;

use super::services::Services;
use super::sink::EventSink;
use crate::image::ImageRef;
use crate::ports::{Coordinator, CoordinatorError, ImageError, ImageSource, NoProgress};
use crate::report::{DeployReport, ServiceState, ServiceStatus};
use crate::service::{ServiceName, ServiceSpec};
use crate::target::{PublishOutcome, PublishRequest, Source};

/// One service as the admin API shows it.
#[derive(Debug, Clone)]
pub struct ServiceView {
    /// Its configuration.
    pub spec: Arc<ServiceSpec>,
    /// What it is doing.
    pub status: ServiceStatus,
    /// Its last finished deploy.
    pub last_report: Option<DeployReport>,
}

/// Why an operator command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// No service has that name.
    #[error("no service named {0:?}")]
    UnknownService(String),
    /// The image asked for is not from the repository the service tracks.
    #[error("service {service} tracks {tracked}; {asked} is another repository")]
    WrongRepository {
        /// The service.
        service: String,
        /// What it tracks.
        tracked: String,
        /// What was asked for.
        asked: String,
    },
    /// A service of that name runs already.
    #[error("a service named {0:?} exists already")]
    ServiceExists(String),
    /// Only services adopted from container labels are forgotten; declared ones stay.
    #[error("service {0:?} is declared in the config, not adopted: it cannot be forgotten")]
    NotAdopted(String),
    /// The driver has stopped.
    #[error("the driver has stopped")]
    Stopped,
    /// There is no earlier build to roll back to.
    #[error("service {0} has no earlier build to roll back to")]
    NothingToRollBack(String),
    /// Resolving or building the image failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The coordinator failed.
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
}

/// Changes to the set of services, carried out by the running driver.
#[derive(Debug)]
pub(crate) enum Control {
    Adopt(Arc<ServiceSpec>),
    Forget(ServiceName),
    /// A reloaded config declares this service anew: its actor restarts with the spec.
    Replace(Arc<ServiceSpec>),
}

/// What a reload changed, by service name.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReloadSummary {
    /// Declared now, not before: they start deploying.
    pub added: Vec<ServiceName>,
    /// Declared before with another spec: their actors restart with the new one (what runs
    /// is recovered, not redeployed; a new template applies at the next deploy).
    pub changed: Vec<ServiceName>,
    /// Declared before, not now: no longer run by this daemon.
    pub removed: Vec<ServiceName>,
    /// Declared the same as before.
    pub unchanged: usize,
}

/// Latest status and report of each service on this host.
#[derive(Debug, Default)]
pub(crate) struct Board {
    services: RwLock<BTreeMap<ServiceName, (ServiceStatus, Option<DeployReport>)>>,
    /// Per tracked repo:tag, the last refused publish or failed resolve, until a publish of it
    /// goes through: shown in the status of every service tracking it.
    notes: RwLock<BTreeMap<ImageRef, String>>,
}

impl Board {
    /// Sets or clears `image`'s note; true when it changed (so each problem is reported once).
    pub(crate) fn set_note(&self, image: &ImageRef, note: Option<String>) -> bool {
        let mut notes = self.notes.write().unwrap_or_else(PoisonError::into_inner);
        let key = image.without_digest();
        match note {
            Some(note) => notes.insert(key, note.clone()).as_ref() != Some(&note),
            None => notes.remove(&key).is_some(),
        }
    }

    fn note(&self, image: &ImageRef) -> Option<String> {
        self.notes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(image)
            .cloned()
    }

    pub(crate) fn forget(&self, name: &ServiceName) {
        self.services
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }

    pub(crate) fn set_status(&self, status: ServiceStatus) {
        let mut services = self
            .services
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match services.get_mut(&status.service) {
            Some(entry) => entry.0 = status,
            None => {
                services.insert(status.service.clone(), (status, None));
            }
        }
    }

    pub(crate) fn set_report(&self, report: &DeployReport) {
        let mut services = self
            .services
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = services.get_mut(&report.service) {
            entry.1 = Some(report.clone());
        }
    }

    fn get(&self, name: &ServiceName) -> Option<(ServiceStatus, Option<DeployReport>)> {
        self.services
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }
}

/// A cheap, cloneable view of a driver and its controls.
#[derive(Clone)]
pub struct DriverHandle {
    pub(crate) node: Arc<str>,
    pub(crate) specs: Services,
    pub(crate) board: Arc<Board>,
    pub(crate) control: mpsc::UnboundedSender<Control>,
    pub(crate) sink: EventSink,
    pub(crate) images: Arc<dyn ImageSource>,
    pub(crate) coordinator: Arc<dyn Coordinator>,
}

impl std::fmt::Debug for DriverHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverHandle")
            .field("node", &self.node)
            .field("services", &self.specs.names())
            .finish_non_exhaustive()
    }
}

impl DriverHandle {
    /// This host's node name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The sink triggers send events to.
    pub fn sink(&self) -> EventSink {
        self.sink.clone()
    }

    /// The coordinator, for history and fleet-wide statuses.
    pub fn coordinator(&self) -> &Arc<dyn Coordinator> {
        &self.coordinator
    }

    /// The image source, for triggers that resolve tags (the poller).
    pub fn images(&self) -> &Arc<dyn ImageSource> {
        &self.images
    }

    /// Every service's spec, by name (adopted ones included).
    pub fn specs(&self) -> Vec<Arc<ServiceSpec>> {
        self.specs.all()
    }

    /// One service's view.
    pub fn service(&self, name: &str) -> Option<ServiceView> {
        let spec = self.specs.get(name)?;
        let (mut status, last_report) = self.board.get(spec.name())?;
        // The engine's own problem comes first; a refused or unresolvable build of the tag
        // otherwise says why nothing happened.
        if status.message.is_none() {
            status.message = self.board.note(spec.image());
        }
        Some(ServiceView {
            spec,
            status,
            last_report,
        })
    }

    /// Every service's view, by name.
    pub fn services(&self) -> Vec<ServiceView> {
        self.specs
            .names()
            .iter()
            .filter_map(|name| self.service(name.as_str()))
            .collect()
    }

    /// Services deploying right now.
    pub fn deploys_in_flight(&self) -> usize {
        self.services()
            .iter()
            .filter(|v| v.status.state.is_deploying())
            .count()
    }

    /// Ready once every service has finished recovering.
    pub fn is_ready(&self) -> bool {
        self.services().len() == self.specs.len()
            && self
                .services()
                .iter()
                .all(|v| v.status.state != ServiceState::Recovering)
    }

    fn spec(&self, name: &str) -> Result<Arc<ServiceSpec>, ControlError> {
        self.specs
            .get(name)
            .ok_or_else(|| ControlError::UnknownService(name.to_owned()))
    }

    /// Starts running `spec`, a service adopted from container labels while the daemon runs
    /// (before [`super::Driver::run`] too). It deploys the newest target of its repo:tag and
    /// can later be [forgotten](Self::forget).
    pub fn adopt(&self, spec: ServiceSpec) -> Result<(), ControlError> {
        let name = spec.name().to_string();
        let spec = Arc::new(spec);
        if !self.specs.insert(spec.clone(), true) {
            return Err(ControlError::ServiceExists(name));
        }
        self.sink.set_tracked(spec.image(), true);
        self.control
            .send(Control::Adopt(spec))
            .map_err(|_| ControlError::Stopped)
    }

    /// Stops running an adopted service whose containers are gone: its actor stops, and its
    /// status leaves this host's view and the coordinator's.
    pub fn forget(&self, name: &str) -> Result<(), ControlError> {
        let spec = self.spec(name)?;
        if !self.specs.is_adopted(spec.name()) {
            return Err(ControlError::NotAdopted(name.to_owned()));
        }
        self.control
            .send(Control::Forget(spec.name().clone()))
            .map_err(|_| ControlError::Stopped)
    }

    /// Makes `declared` the declared services, as a reloaded config says: new ones start,
    /// changed ones restart with their new spec, and those no longer declared stop and leave
    /// the views (a service adopted from labels and now declared counts as changed; adopted
    /// services the config does not name stay as they are). Nothing is changed when two
    /// specs share a name.
    pub fn reload(&self, declared: Vec<ServiceSpec>) -> Result<ReloadSummary, ControlError> {
        let mut seen = std::collections::BTreeSet::new();
        for spec in &declared {
            if !seen.insert(spec.name().clone()) {
                return Err(ControlError::ServiceExists(spec.name().to_string()));
            }
        }
        let mut summary = ReloadSummary::default();
        for spec in declared {
            let spec = Arc::new(spec);
            let name = spec.name().clone();
            match self.specs.get(name.as_str()) {
                None => {
                    self.specs.insert(spec.clone(), false);
                    self.sink.set_tracked(spec.image(), true);
                    self.send(Control::Adopt(spec))?;
                    summary.added.push(name);
                }
                Some(old) if *old == *spec && !self.specs.is_adopted(&name) => {
                    summary.unchanged += 1;
                }
                Some(old) => {
                    self.specs.replace(spec.clone());
                    self.sink.set_tracked(spec.image(), true);
                    if self.specs.tracking(old.image()).is_empty() {
                        self.sink.set_tracked(old.image(), false);
                    }
                    self.send(Control::Replace(spec))?;
                    summary.changed.push(name);
                }
            }
        }
        for old in self.specs.declared() {
            if !seen.contains(old.name()) {
                self.send(Control::Forget(old.name().clone()))?;
                summary.removed.push(old.name().clone());
            }
        }
        Ok(summary)
    }

    fn send(&self, control: Control) -> Result<(), ControlError> {
        self.control
            .send(control)
            .map_err(|_| ControlError::Stopped)
    }

    /// Whether `name` is a service adopted from labels.
    pub fn is_adopted(&self, name: &str) -> bool {
        self.specs
            .get(name)
            .is_some_and(|spec| self.specs.is_adopted(spec.name()))
    }

    /// Deploys `image` (another tag or a digest of the tracked repository), or re-resolves the
    /// tracked tag, or rebuilds a service built from a directory. The target is published with
    /// `force`, so an earlier build or one halted after a failure is deployed again.
    pub async fn deploy(
        &self,
        service: &str,
        image: Option<ImageRef>,
    ) -> Result<PublishOutcome, ControlError> {
        let spec = self.spec(service)?;
        let tracked = spec.image();
        let digest = match (&image, spec.build()) {
            (None, Some(build)) => self.images.build(tracked, build, &NoProgress).await?,
            _ => {
                let asked = image.unwrap_or_else(|| tracked.clone());
                if !asked.same_repository(tracked) {
                    return Err(ControlError::WrongRepository {
                        service: service.to_owned(),
                        tracked: tracked.to_string(),
                        asked: asked.to_string(),
                    });
                }
                match asked.digest() {
                    Some(digest) => digest.clone(),
                    None => self.images.resolve(&asked).await?,
                }
            }
        };
        let mut request = PublishRequest::new(tracked.clone(), digest, Source::new("api"));
        request.force = true;
        // Retrying a halted build clears this service's halt only: another service that failed
        // on the same build stays halted until it is deployed on purpose too.
        request.service = Some(spec.name().clone());
        Ok(self.coordinator.publish(request).await?)
    }

    /// Publishes the build before the current one, for every service tracking the same tag.
    pub async fn rollback(&self, service: &str) -> Result<PublishOutcome, ControlError> {
        let spec = self.spec(service)?;
        let current = self.coordinator.target(spec.image()).await?;
        let Some(previous) = current.as_ref().and_then(|t| t.rollback_digest()) else {
            return Err(ControlError::NothingToRollBack(service.to_owned()));
        };
        let mut request = PublishRequest::new(
            spec.image().clone(),
            previous.clone(),
            Source::new("rollback"),
        );
        request.force = true;
        Ok(self.coordinator.publish(request).await?)
    }
}
