"""The Slurm backend: jobs are sbatch jobs on a cluster; a shared ``run_root`` carries
bundles, metrics and results."""

from nblaunch.runners.slurm.options import SlurmOptions
from nblaunch.runners.slurm.runner import SlurmRunner

__all__ = ["SlurmOptions", "SlurmRunner"]
