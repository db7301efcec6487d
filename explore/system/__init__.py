"""System-level design-space exploration: how to partition and map one network on one platform
(the modules of this package; `alohac explore-mapping` drives them)."""
