"""algorithms: decentralized methods written once against the Communicator protocol."""
