//! The stop strategy (die-net/deployer's): stop the containers that run an outdated image
//! and leave the restart to a supervisor (a systemd or fleet unit running `docker run`, a
//! restart policy). The containers stay, under their names, for the supervisor.
//!
//! Which containers: those labelled `deployer.service=<name>` (put the label in the unit's
//! `docker run`), and adopted ones labelled `deployer.enable=true` and
//! `deployer.strategy=stop`. The other steps are the recreate strategy's.

use deployer_core::ServiceSpec;
use deployer_core::ports::{Retired, SwitchError};
use deployer_core::reconcile::InstanceId;

use super::{DockerSwitcher, engine};

pub(super) async fn retire(
    switcher: &DockerSwitcher,
    service: &ServiceSpec,
    id: InstanceId,
) -> Result<Retired, SwitchError> {
    let Some(found) = switcher.find(service, id).await? else {
        return Ok(Retired::AlreadyStopped);
    };
    if !found.running {
        return Ok(Retired::AlreadyStopped);
    }
    switcher
        .stop_container(&found.id, service.timeouts().stop)
        .await
        .map_err(engine("retire", service, id))?;
    tracing::info!(service = %service.name(), instance = %id, container = %found.name, "stopped for the supervisor to restart");
    Ok(Retired::Stopped { cut: 0 })
}
