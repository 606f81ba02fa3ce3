//! The control plane: the socket the CLI talks to the daemon through.

pub mod protocol;
pub mod render;
