"""``ipiv vmxcap``: what a CPU's VMX capability MSRs allow and what KVM decides on it."""

import json

from sim.kvm_kernel import DEFAULT_KERNEL, KERNELS
from .args import fail


__all__ = ["register"]


def register(subparsers):
    """Add ``vmxcap`` to ``subparsers`` (from ``add_subparsers``)."""
    p = subparsers.add_parser("vmxcap", help="what a CPU's VMX MSRs allow and what KVM decides")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--cpu", metavar="PRESET", help="a CPU preset (default: ipiv; see "
                        "--list-cpus)")
    source.add_argument("--msrs", metavar="FILE", help="MSR values, one '<index> <value>' per "
                        "line in hex with 0x, '#' comments")
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
    if args.list_cpus:
        for name, (text, _) in PRESETS.items():
            print(f"{name:18s} {text}")
        return 0
    try:
        msrs = MSRs.from_file(args.msrs) if args.msrs else preset(args.cpu or "ipiv")
    except KeyError:
        fail("ipiv vmxcap", f"unknown CPU preset {args.cpu!r} (known: {', '.join(PRESETS)})",
             status=1)
    except MSRFileError as e:
        fail("ipiv vmxcap", e, status=1)
    if args.json:
        print(json.dumps(report_json(msrs, evmcs=args.evmcs, kernel=args.kernel), indent=2))
    else:
        print(report(msrs, evmcs=args.evmcs, kernel=args.kernel))
    return 0
