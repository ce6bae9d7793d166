//! The `agora` command line: arguments, commands, and human renderings.

pub(crate) mod args;
pub(crate) mod commands;
mod logs;
mod money;
mod progress;
mod render;
mod result;
mod table;
mod watch;
