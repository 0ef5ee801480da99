"""LatentVLA on a ROS 2 vehicle: latent actions, distilled student, fusion planner.

The Python package shares its name with the package's rosidl interfaces
(``latentvla_ros.msg``), which are generated and installed by CMake. When
this source tree is imported directly (tests, ``python -m`` from the repo),
extend ``__path__`` so the installed generated modules are found as well.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
