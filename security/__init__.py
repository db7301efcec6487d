"""Security evaluation (the seeds' SEC engine): accuracy under attack as a curve over the
perturbation bound, its sanity checks, and the `analyze-security` pass. A layer beside `backends`
and `fairness`: it runs the models through `runtime`'s executors and attacks, and is used by the
explorer and the driver."""
