"""Grids, from a laptop to a cluster, apart from a job's data flow: a grid's cells before it runs (`cells`), what
a sweep covers (`siblings`: what one forward can also serve), resuming (`resume`), failed cells and the sweep's
end (`outcome`: the `SweepOutcome` callback that writes the report), what a grid will run and cost (`plan`),
what it reads from the hub (`fetch`), and what a machine offers (`doctor`)."""
