"""pip install path for the ROS-free part: models, training, evaluation, the cache reader.

colcon builds this repository from package.xml (ament_cmake: interfaces + nodes);
this file is for machines without ROS, e.g. a GPU server that trains on a dataset
cache built elsewhere:

    pip install .            # models, training, evaluation, `latentvla train|eval|label`
    pip install .[sim]       # + the driving world (highway-env)
    pip install .[bags]      # + rosbag2 containers (reading bags also needs rclpy: a ROS install)
    pip install .[vlm]       # + the teacher VLM (transformers' Qwen2.5-VL, tokenizers, peft for LoRA)

    torchrun --nproc_per_node 4 -m latentvla_ros.cli train lam --data CACHE --out runs/lam

The ROS parts (nodes, messages, bag I/O) are installed too but import only where
rclpy and the generated interfaces are present.
"""

from pathlib import Path

from setuptools import find_packages, setup

package_xml = (Path(__file__).parent / "package.xml").read_text()
version = package_xml.split("<version>")[1].split("</version>")[0]

setup(
    name="latentvla_ros",
    version=version,
    description="LatentVLA: latent actions, distilled student and fusion planner (ROS-free core)",
    long_description=(Path(__file__).parent / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["latentvla_ros", "latentvla_ros.*"]),
    include_package_data=False,
    install_requires=[
        "numpy>=1.24",
        "torch>=2.2",
        "safetensors>=0.4",
        "tqdm>=4.60",
        "scikit-learn>=1.3",
        "scipy>=1.9",
        "opencv-python-headless>=4.8",
        "matplotlib>=3.7",
        "pyyaml>=6.0",
    ],
    extras_require={
        "sim": ["highway-env>=1.10", "gymnasium>=1.0"],
        "bags": ["rosbags>=0.10", "transforms3d>=0.4"],
        # No torchvision: transformers imports it whenever present, and it pins its own torch.
        "vlm": ["transformers>=5.0", "tokenizers>=0.21", "peft>=0.15", "pillow>=10"],
        "foxglove": ["foxglove-sdk>=0.30"],  # the planner's optional live view
    },
    entry_points={"console_scripts": ["latentvla=latentvla_ros.cli:main"]},
)
