"""From an op's recipe to a verified fixture: the Vulkan lowering every recipe uses (lowering.py), the .pte
delegate reader (pte.py), the fixture store (fixtures.py) and ExecuTorch's kernel trees (kernel_sets.py,
generator.py)."""
