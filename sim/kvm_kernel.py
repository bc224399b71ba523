"""The kernel switch of the KVM model: which Linux release's KVM the model follows.

``"6.0"`` is the release that merged IPI virtualization (the seed series); ``"6.19"`` is
mainline as of the 6.19 series. Every entry point of the KVM model (`sim.kvm.KVM`, the
`sim.kvm_setup` decision functions, `sim.vmx_flags`, `sim.vmxcap_report`) takes
``kernel=`` and checks it here. What differs between the two is listed in
``docs/kvm-model.md`` and in the docstrings of the functions that branch on it.
"""

__all__ = ["KERNELS", "DEFAULT_KERNEL", "check_kernel"]

KERNELS = ("6.0", "6.19")
DEFAULT_KERNEL = "6.0"


def check_kernel(kernel):
    """``kernel`` if it is a known release; otherwise a one-line `ValueError`."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r} (known: {', '.join(KERNELS)})")
    return kernel
