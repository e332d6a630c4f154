//! A run between the command line and the engine: what it is asked to be (`spec`), how it
//! starts (`start`, `ecs`, `resume`) and ends (`finish`, `summary`), the console as its
//! front end (`console`), the fleet demo's release and closing (`fleet_demo`), sharing it on the socket (`share`), handing it over to a
//! background server (`handover`), and the other side of sharing: the link an attached
//! console runs on (`remote_link`), which follows its run to the engine that took it over
//! (`follow`: the rule, read from the journal). Exit codes live in `exit`.

pub mod console;
pub mod contract;
mod ecs;
pub mod exit;
pub mod finish;
pub mod fleet_demo;
pub mod follow;
pub mod handover;
pub mod image_gate;
mod journal_failure;
pub mod lifecycle;
pub mod policy_gate;
pub mod remote_link;
pub mod report;
pub mod resume;
pub mod run;
pub mod share;
pub mod spec;
pub mod standby;
pub mod start;
pub mod summary;

pub use console::UiOptions;
pub use exit::{EXIT_INTERNAL, EXIT_INVALID, EXIT_ROLLED_BACK, EXIT_UNFINISHED, Failure};
pub use remote_link::{RemoteLink, remote_link, remote_link_following};
pub use share::{presence_names, socket_path};
pub use spec::{Aws, Begin, Front, Output, RunSpec, Serving, contract_mode};
pub use start::{Session, runtime, start_session_with};
