"""Test-only mutants of the unit's stages: one mutation table per stage.

Each `hdl.faults.Fault` is a small mixin that overrides one named step of the stage that owns
it (the steps are the stages' methods under "the steps"), so the real designs read without
any fault and a mutant is ``type(name, (mixin, ..., Stage), {})``. `MUTATION_TABLES` maps each
stage class to its table {Fault: mixin}; every fault has exactly one owner.
"""

from ..icr_interceptor import ICRInterceptor
from ..pid_lookup import PIDLookup
from ..pid_update import PIDUpdate
from ..virr_update import VIRRUpdate
from ..pipelined_issuer import PipelinedIssuer
from ..pipelined_sequencer import PipelinedSequencer
from . import icr_interceptor, pid_lookup, pid_update, pipelined, virr_update


__all__ = ["MUTATION_TABLES", "STAGE_FAULTS", "FAULT_BUS", "mutant", "faults_of"]

#: Stage class -> {Fault: mixin overriding one of its steps}.
MUTATION_TABLES = {
    ICRInterceptor: icr_interceptor.MUTANTS,
    PIDLookup: pid_lookup.MUTANTS,
    PIDUpdate: pid_update.MUTANTS,
    VIRRUpdate: virr_update.MUTANTS,
    PipelinedSequencer: pipelined.SEQUENCER_MUTANTS,
    PipelinedIssuer: pipelined.ISSUER_MUTANTS,
}

#: Fault -> the memory port of the unit that has the component it is built into.
FAULT_BUS = {fault: "pipelined" if stage in (PipelinedSequencer, PipelinedIssuer) else "classic"
             for stage, table in MUTATION_TABLES.items() for fault in table}

#: Stage class name -> the faults it owns.
STAGE_FAULTS = {stage.__name__: frozenset(table) for stage, table in MUTATION_TABLES.items()}


def mutant(stage, faults):
    """``stage`` (a class) with the mixins of ``faults`` (those it owns; others ignored), or
    ``stage`` itself when none applies."""
    table = MUTATION_TABLES[stage]
    mixins = tuple(table[f] for f in sorted(faults, key=lambda f: f.value) if f in table)
    if not mixins:
        return stage
    names = "+".join(f.value for f in sorted(faults, key=lambda f: f.value) if f in table)
    return type(f"{stage.__name__}[{names}]", (*mixins, stage), {})


def faults_of(components):
    """The faults the classes ``components`` own between them."""
    return frozenset().union(*(MUTATION_TABLES[c] for c in components))
