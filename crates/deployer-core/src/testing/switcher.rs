use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::Failures;
use crate::image::{Digest, ImageRef};
use crate::ports::{FailureKind, Promoted, Removed, Retired, Started, SwitchError, Switcher};
use crate::reconcile::{Health, InstanceId, InstanceSpec, Observed, ObservedInstance, RunState};
use crate::service::{ServiceName, ServiceSpec};

/// One simulated container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeInstance {
    /// Image it was created from.
    pub image: ImageRef,
    /// Build it runs.
    pub digest: Option<Digest>,
    /// Running or stopped.
    pub running: bool,
    /// Takes traffic.
    pub serving: bool,
    /// Passed a probe since it last started.
    pub healthy: bool,
    /// Probes answered since it last started.
    pub probes: u32,
}

/// A recorded switcher call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The service.
    pub service: ServiceName,
    /// `observe`, `start`, `probe`, `promote`, `retire` or `remove`.
    pub op: &'static str,
    /// The instance, for all but `observe`.
    pub instance: Option<InstanceId>,
    /// When (tokio time, so paused clocks give exact values).
    pub at: Instant,
}

/// The simulated engine behind [`FakeSwitcher`]; usable directly by synchronous tests.
#[derive(Debug, Default)]
pub struct World {
    /// Every container, by service and instance.
    pub instances: BTreeMap<(ServiceName, InstanceId), FakeInstance>,
    /// Builds whose probes never succeed.
    pub unhealthy: HashSet<Digest>,
    /// Builds whose containers exit right after starting.
    pub exits: HashSet<Digest>,
    /// Builds that need this many probes before they are healthy (a slow boot).
    pub slow: HashMap<Digest, u32>,
    /// Builds whose containers crash once they answered this many probes (healthy at first,
    /// then dead: the crash a watched promotion catches).
    pub crashes_after: HashMap<Digest, u32>,
    /// Services whose containers cannot be started (a broken template, an image that cannot
    /// run for them), with what that failure means.
    pub broken: HashMap<ServiceName, FailureKind>,
    /// Every call, in order.
    pub calls: Vec<Call>,
    failures: Failures,
    /// The kind injected failures of an operation have, where not the default.
    kinds: HashMap<&'static str, FailureKind>,
}

impl World {
    /// Fails the next `times` calls of `op`, with the operation's default kind: a failed
    /// `start` is the build's fault (its image cannot run), anything else transient.
    pub fn fail_next(&mut self, op: &'static str, times: u32) {
        self.failures.set(op, times);
    }

    /// Fails the next `times` calls of `op` with failures of `kind` (an engine that is
    /// unreachable, a configuration it refuses, ...).
    pub fn fail_next_with(&mut self, op: &'static str, times: u32, kind: FailureKind) {
        self.failures.set(op, times);
        self.kinds.insert(op, kind);
    }

    fn kind_of(&self, op: &'static str, service: &ServiceName) -> FailureKind {
        if let (Some(kind), "start") = (self.broken.get(service), op) {
            return *kind;
        }
        match (self.kinds.get(op), op) {
            (Some(kind), _) => *kind,
            (None, "start") => FailureKind::Build,
            (None, _) => FailureKind::Transient,
        }
    }

    fn record(
        &mut self,
        service: &ServiceName,
        op: &'static str,
        instance: Option<InstanceId>,
    ) -> Result<(), String> {
        self.calls.push(Call {
            service: service.clone(),
            op,
            instance,
            at: Instant::now(),
        });
        if self.failures.take(op) {
            return Err(format!("injected {op} failure"));
        }
        Ok(())
    }

    /// The service's containers.
    pub fn observe(&mut self, service: &ServiceName) -> Result<Observed, String> {
        self.record(service, "observe", None)?;
        let instances = self
            .instances
            .iter()
            .filter(|((s, _), _)| s == service)
            .map(|((_, id), i)| ObservedInstance {
                id: *id,
                image: i.image.clone(),
                digest: i.digest.clone(),
                state: if i.running {
                    RunState::Running
                } else {
                    RunState::Stopped
                },
                serving: i.running && i.serving,
            })
            .collect();
        Ok(Observed { instances })
    }

    /// Ensures the instance runs.
    pub fn start(&mut self, service: &ServiceName, spec: &InstanceSpec) -> Result<Started, String> {
        self.record(service, "start", Some(spec.id))?;
        if self.broken.contains_key(service) {
            return Err(format!("{service} cannot be started"));
        }
        let exits = spec.digest.as_ref().is_some_and(|d| self.exits.contains(d));
        let key = (service.clone(), spec.id);
        let outcome = match self.instances.get_mut(&key) {
            Some(i) if i.running => return Ok(Started::AlreadyRunning),
            Some(i) => {
                i.running = !exits;
                i.healthy = false;
                i.probes = 0;
                Started::Restarted
            }
            None => {
                self.instances.insert(
                    key,
                    FakeInstance {
                        image: spec.image.clone(),
                        digest: spec.digest.clone(),
                        running: !exits,
                        serving: false,
                        healthy: false,
                        probes: 0,
                    },
                );
                Started::Created
            }
        };
        Ok(outcome)
    }

    /// Probes the instance once.
    pub fn probe(&mut self, service: &ServiceName, id: InstanceId) -> Result<Health, String> {
        self.record(service, "probe", Some(id))?;
        let (unhealthy, slow, crashes_after) = (&self.unhealthy, &self.slow, &self.crashes_after);
        let Some(i) = self.instances.get_mut(&(service.clone(), id)) else {
            return Ok(Health::Exited("no such container".into()));
        };
        if !i.running {
            return Ok(Health::Exited("container is not running".into()));
        }
        i.probes += 1;
        let digest = i.digest.as_ref();
        if digest
            .and_then(|d| crashes_after.get(d))
            .is_some_and(|after| i.probes > *after)
        {
            i.running = false;
            i.serving = false;
            return Ok(Health::Exited("exit code 139 (crashed)".into()));
        }
        if digest.is_some_and(|d| unhealthy.contains(d)) {
            return Ok(Health::Unhealthy("connection refused".into()));
        }
        if digest
            .and_then(|d| slow.get(d))
            .is_some_and(|need| i.probes < *need)
        {
            return Ok(Health::Unhealthy("still booting".into()));
        }
        i.healthy = true;
        Ok(Health::Healthy)
    }

    /// Lets the instance take traffic.
    pub fn promote(&mut self, service: &ServiceName, id: InstanceId) -> Result<Promoted, String> {
        self.record(service, "promote", Some(id))?;
        let i = self
            .instances
            .get_mut(&(service.clone(), id))
            .ok_or_else(|| format!("no container {id}"))?;
        if !i.running {
            return Err(format!("{id} is not running"));
        }
        let was = std::mem::replace(&mut i.serving, true);
        // As the proxy does: the slot's older instances leave the rotation in the same step.
        for ((s, other), peer) in &mut self.instances {
            if s == service && other.slot == id.slot && other.generation != id.generation {
                peer.serving = false;
            }
        }
        Ok(if was {
            Promoted::AlreadyServing
        } else {
            Promoted::Switched
        })
    }

    /// Takes the instance out of traffic and stops it.
    pub fn retire(&mut self, service: &ServiceName, id: InstanceId) -> Result<Retired, String> {
        self.record(service, "retire", Some(id))?;
        match self.instances.get_mut(&(service.clone(), id)) {
            Some(i) if i.running => {
                i.running = false;
                i.serving = false;
                Ok(Retired::Stopped { cut: 0 })
            }
            _ => Ok(Retired::AlreadyStopped),
        }
    }

    /// Deletes the instance.
    pub fn remove(&mut self, service: &ServiceName, id: InstanceId) -> Result<Removed, String> {
        self.record(service, "remove", Some(id))?;
        Ok(match self.instances.remove(&(service.clone(), id)) {
            Some(_) => Removed::Removed,
            None => Removed::AlreadyGone,
        })
    }

    /// Instances of `service` that take traffic.
    pub fn serving(&self, service: &ServiceName) -> Vec<InstanceId> {
        self.instances
            .iter()
            .filter(|((s, _), i)| s == service && i.running && i.serving)
            .map(|((_, id), _)| *id)
            .collect()
    }

    /// Instances of `service`, running or not.
    pub fn all(&self, service: &ServiceName) -> Vec<InstanceId> {
        self.instances
            .keys()
            .filter(|(s, _)| s == service)
            .map(|(_, id)| *id)
            .collect()
    }

    /// The process crashed: the in-process proxy's state is lost, containers keep running.
    pub fn crash(&mut self) {
        for i in self.instances.values_mut() {
            i.serving = false;
        }
    }
}

/// A [`Switcher`] over a simulated [`World`]; each step can be given a (tokio) duration.
#[derive(Debug, Default)]
pub struct FakeSwitcher {
    world: Mutex<World>,
    delays: Mutex<HashMap<&'static str, Duration>>,
}

impl FakeSwitcher {
    /// An empty world.
    pub fn new() -> Self {
        Self::default()
    }

    /// The simulated world, to set up or inspect.
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes every call of `op` take `delay`.
    pub fn set_delay(&self, op: &'static str, delay: Duration) {
        self.delays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(op, delay);
    }

    async fn pause(&self, op: &'static str) {
        let delay = self
            .delays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(op)
            .copied();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
    }
}

impl FakeSwitcher {
    fn fail(
        &self,
        op: &'static str,
        service: &ServiceSpec,
        instance: InstanceId,
        reason: String,
    ) -> SwitchError {
        let kind = self.world().kind_of(op, service.name());
        if kind == FailureKind::Transient && op != "probe" {
            return SwitchError::EngineUnreachable {
                operation: op,
                service: service.name().to_string(),
                source: reason.into(),
            };
        }
        SwitchError::Failed {
            operation: op,
            service: service.name().to_string(),
            instance,
            kind,
            reason,
            source: None,
        }
    }
}

#[async_trait]
impl Switcher for FakeSwitcher {
    async fn observe(&self, service: &ServiceSpec) -> Result<Observed, SwitchError> {
        self.pause("observe").await;
        self.world()
            .observe(service.name())
            .map_err(|reason| SwitchError::EngineUnreachable {
                operation: "observe",
                service: service.name().to_string(),
                source: reason.into(),
            })
    }

    async fn start(
        &self,
        service: &ServiceSpec,
        instance: &InstanceSpec,
    ) -> Result<Started, SwitchError> {
        self.pause("start").await;
        let r = self.world().start(service.name(), instance);
        r.map_err(|e| self.fail("start", service, instance.id, e))
    }

    async fn probe(
        &self,
        service: &ServiceSpec,
        instance: InstanceId,
    ) -> Result<Health, SwitchError> {
        self.pause("probe").await;
        let r = self.world().probe(service.name(), instance);
        r.map_err(|e| self.fail("probe", service, instance, e))
    }

    async fn promote(
        &self,
        service: &ServiceSpec,
        instance: InstanceId,
    ) -> Result<Promoted, SwitchError> {
        self.pause("promote").await;
        let r = self.world().promote(service.name(), instance);
        r.map_err(|e| self.fail("promote", service, instance, e))
    }

    async fn retire(
        &self,
        service: &ServiceSpec,
        instance: InstanceId,
    ) -> Result<Retired, SwitchError> {
        self.pause("retire").await;
        let r = self.world().retire(service.name(), instance);
        r.map_err(|e| self.fail("retire", service, instance, e))
    }

    async fn remove(
        &self,
        service: &ServiceSpec,
        instance: InstanceId,
    ) -> Result<Removed, SwitchError> {
        self.pause("remove").await;
        let r = self.world().remove(service.name(), instance);
        r.map_err(|e| self.fail("remove", service, instance, e))
    }
}
