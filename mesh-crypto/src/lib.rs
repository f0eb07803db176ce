//! The Bluetooth mesh security toolbox (Mesh Protocol 1.1 §3.9 and §5.4.2).
