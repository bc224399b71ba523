"""``ipiv vmxcap``: what a CPU's VMX capability MSRs allow and what KVM decides on it."""

import json

from sim.kvm_kernel import DEFAULT_KERNEL, KERNELS
from .args import fail, read_input


__all__ = ["register"]


def register(subparsers):
    """Add ``vmxcap`` to ``subparsers`` (from ``add_subparsers``)."""
    p = subparsers.add_parser("vmxcap", help="what a CPU's VMX MSRs allow and what KVM decides")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--cpu", metavar="PRESET", help="a CPU preset (default: ipiv; see "
                        "--list-cpus)")
    source.add_argument("--msrs", metavar="FILE", help="MSR values, one '<index> <value>' per "
                        "line in hex with 0x, '#' comments; - reads standard input")
    p.add_argument("--evmcs", action="store_true", help="KVM runs on Hyper-V's enlightened VMCS")
    p.add_argument("--kernel", choices=KERNELS, default=DEFAULT_KERNEL,
                   help=f"the Linux release whose KVM decides (default {DEFAULT_KERNEL})")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--list-cpus", action="store_true", help="list the CPU presets and exit")
    p.set_defaults(func=run)
    return p


def run(args):
    from sim.vmx_caps import PRESETS, MSRFileError, MSRs, preset
    from sim.vmxcap_report import report, report_json
    prog = "ipiv vmxcap"
    if args.list_cpus:
        if args.json:
            print(json.dumps({name: text for name, (text, _) in PRESETS.items()}, indent=2))
        else:
            for name, (text, _) in PRESETS.items():
                print(f"{name:18s} {text}")
        return 0
    if args.cpu is not None and args.cpu not in PRESETS:
        fail(prog, f"unknown CPU preset {args.cpu!r} (known: {', '.join(PRESETS)})")
    if args.msrs:
        text = read_input(prog, args.msrs, status=1)
        try:
            msrs = MSRs.parse(text, source="<stdin>" if args.msrs == "-" else args.msrs)
        except MSRFileError as e:
            fail(prog, e, status=1)
    else:
        msrs = preset(args.cpu or "ipiv")
    if args.json:
        print(json.dumps(report_json(msrs, evmcs=args.evmcs, kernel=args.kernel), indent=2))
    else:
        print(report(msrs, evmcs=args.evmcs, kernel=args.kernel))
    return 0
