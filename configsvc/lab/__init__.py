"""The partition lab: a local cluster you can break (``cuts``, ``control``),
and measured runs of scenarios against it."""
