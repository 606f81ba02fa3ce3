//! The control plane: the socket the CLI talks to the daemon through.

pub mod client;
pub mod protocol;
pub mod render;
pub mod server;
mod socket_file;
