//! The services a driver runs: those it was built with, plus those adopted while it runs
//! (containers opted in by label after the daemon started), minus adopted ones forgotten
//! when their containers were removed.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::image::ImageRef;
use crate::service::{ServiceName, ServiceSpec};

/// Shared by the driver, its handle and the ingest worker; every reader takes a snapshot, so
/// a service adopted meanwhile is simply seen by the next one.
#[derive(Debug, Clone, Default)]
pub(crate) struct Services {
    inner: Arc<RwLock<BTreeMap<ServiceName, Entry>>>,
}

#[derive(Debug, Clone)]
struct Entry {
    spec: Arc<ServiceSpec>,
    /// Adopted from labels rather than declared: only those are ever forgotten.
    adopted: bool,
}

impl Services {
    /// Every service, by name.
    pub(crate) fn all(&self) -> Vec<Arc<ServiceSpec>> {
        self.read().values().map(|e| e.spec.clone()).collect()
    }

    pub(crate) fn names(&self) -> Vec<ServiceName> {
        self.read().keys().cloned().collect()
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<ServiceSpec>> {
        self.read()
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, e)| e.spec.clone())
    }

    pub(crate) fn len(&self) -> usize {
        self.read().len()
    }

    /// The services tracking `image`'s repo:tag.
    pub(crate) fn tracking(&self, image: &ImageRef) -> Vec<Arc<ServiceSpec>> {
        let image = image.without_digest();
        self.read()
            .values()
            .filter(|e| e.spec.image() == &image)
            .map(|e| e.spec.clone())
            .collect()
    }

    /// Adds `spec`; false (and nothing changes) when a service of that name exists.
    pub(crate) fn insert(&self, spec: Arc<ServiceSpec>, adopted: bool) -> bool {
        let mut services = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if services.contains_key(spec.name()) {
            return false;
        }
        services.insert(spec.name().clone(), Entry { spec, adopted });
        true
    }

    pub(crate) fn is_adopted(&self, name: &ServiceName) -> bool {
        self.read().get(name).is_some_and(|e| e.adopted)
    }

    /// Removes a service.
    pub(crate) fn remove(&self, name: &ServiceName) -> Option<Arc<ServiceSpec>> {
        let mut services = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        services.remove(name).map(|e| e.spec)
    }

    /// Puts `spec` in place of the service of its name, as declared (a reloaded config).
    pub(crate) fn replace(&self, spec: Arc<ServiceSpec>) -> Option<Arc<ServiceSpec>> {
        let mut services = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let entry = Entry {
            spec,
            adopted: false,
        };
        services
            .insert(entry.spec.name().clone(), entry)
            .map(|old| old.spec)
    }

    /// The declared services (not the adopted ones).
    pub(crate) fn declared(&self) -> Vec<Arc<ServiceSpec>> {
        self.read()
            .values()
            .filter(|e| !e.adopted)
            .map(|e| e.spec.clone())
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<ServiceName, Entry>> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }
}
