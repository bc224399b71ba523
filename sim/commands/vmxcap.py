"""``ipiv vmxcap``: does this CPU support IPIv, would kvm_intel enable it, and what its VMX
capability MSRs allow (QEMU's vmxcap report, then what KVM decides)."""

import argparse
import difflib
import json
import sys

from sim.kvm_kernel import DEFAULT_KERNEL, KERNELS
from .args import fail, print_listing, read_input


__all__ = ["register", "kstrtobool", "module_param"]

# kernel/params.c param_set_bool -> kstrtobool (lib/kstrtox.c, 6.0 and 6.19): the first
# character decides, "on"/"off" by the second.
_TRUE, _FALSE = set("yYtT1"), set("nNfF0")


def kstrtobool(text):
    """A boolean module parameter's value as the kernel parses it, or ValueError."""
    if text[:1] in _TRUE or text[:2].lower() == "on":
        return True
    if text[:1] in _FALSE or text[:2].lower() == "of":
        return False
    raise ValueError(f"{text!r} is not a boolean (1/0, y/n, on/off)")


def module_param(text):
    """An argparse type: ``NAME=VALUE`` (``kvm_intel.`` prefix allowed) -> (NAME, bool)."""
    from sim.vmxcap_report import MODULE_PARAMETERS
    name, sep, value = text.partition("=")
    name = name.strip().removeprefix("kvm_intel.")
    if name not in MODULE_PARAMETERS:
        close = difflib.get_close_matches(name, MODULE_PARAMETERS, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise argparse.ArgumentTypeError(
            f"unknown kvm_intel parameter {name!r} (known: {', '.join(MODULE_PARAMETERS)}"
            f"{hint})")
    try:
        return name, kstrtobool(value.strip()) if sep else True   # no "=": set (params.c)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{name}: {e}") from None


def register(subparsers):
    """Add ``vmxcap`` to ``subparsers`` (from ``add_subparsers``)."""
    p = subparsers.add_parser("vmxcap", help="does a CPU support IPIv, would KVM enable it; "
                              "what its VMX MSRs allow")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--cpu", metavar="PRESET", help="a CPU preset (default: ipiv; see "
                        "--list-cpus)")
    source.add_argument("--msrs", metavar="FILE", help="MSR values, one '<index> <value>' per "
                        "line in hex (0x optional), '#' comments; - reads standard input")
    p.add_argument("--evmcs", action="store_true", help="KVM runs on Hyper-V's enlightened VMCS")
    p.add_argument("--kernel", choices=KERNELS, default=DEFAULT_KERNEL,
                   help=f"the Linux release whose KVM decides (default {DEFAULT_KERNEL})")
    p.add_argument("--param", metavar="NAME=VALUE", type=module_param, action="append",
                   default=[], help="a kvm_intel module parameter, e.g. enable_ipiv=0 "
                   "(enable_apicv, enable_ipiv, error_on_inconsistent_vmcs_config); repeatable")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--summary", action="store_true",
                      help="print only the verdict paragraph")
    what.add_argument("--qemu", action="store_true", help="print only what QEMU's vmxcap "
                      "prints (to diff with vmxcap run on the real machine)")
    what.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--list-cpus", action="store_true", help="list the CPU presets and exit")
    p.set_defaults(func=run)
    return p


def _list_cpus(as_json):
    from sim.vmx_caps import PRESETS
    return print_listing({name: text for name, (text, _) in PRESETS.items()}, as_json)


def _msrs(prog, args):
    from sim.vmx_caps import PRESETS, MSRFileError, MSRs, preset
    if args.cpu is not None and args.cpu not in PRESETS:
        fail(prog, f"unknown CPU preset {args.cpu!r} (known: {', '.join(PRESETS)})")
    if not args.msrs:
        return preset(args.cpu or "ipiv")
    text = read_input(prog, args.msrs, status=1)
    try:
        return MSRs.parse(text, source="<stdin>" if args.msrs == "-" else args.msrs)
    except MSRFileError as e:
        fail(prog, e, status=1)


def run(args):
    from sim.kvm_setup import ModuleParams
    from sim.vmxcap_report import report, report_json, warnings
    prog = "ipiv vmxcap"
    if args.list_cpus:
        return _list_cpus(args.json)
    msrs = _msrs(prog, args)
    params = ModuleParams(**dict(args.param))
    if args.json:
        print(json.dumps(report_json(msrs, evmcs=args.evmcs, kernel=args.kernel,
                                     params=params), indent=2))
    else:
        part = "summary" if args.summary else "qemu" if args.qemu else "all"
        print(report(msrs, evmcs=args.evmcs, kernel=args.kernel, params=params, part=part))
    sys.stdout.flush()
    for line in warnings(msrs):
        sys.stderr.write(f"{prog}: {line}\n")
    return 0
