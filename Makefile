# Two commands on a machine without ROS:  make demo  |  make test
# Each sets up what it needs once (venv with pinned dependencies, generated
# interfaces) and only redoes a step when its inputs change.

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
BUILD_DIR := build/venv

# What the interface build installs into the venv (messages and, as symlinks,
# the Python package, launch files, configs, models): rerun when any changes.
INSTALL_INPUTS := CMakeLists.txt package.xml $(wildcard cmake/*) $(wildcard msg/*.msg) \
	$(shell find latentvla_ros launch config models rviz -type f -not -path '*/__pycache__/*' 2>/dev/null)

# The venv is also the ROS prefix: ament looks up packages and interfaces here.
export AMENT_PREFIX_PATH := $(abspath $(VENV))

.PHONY: demo test train setup clean colcon-build

# The ROS 2 graph (simulator, planner, recorder) driving for a simulated minute;
# writes out/demo/bag and out/demo/*.png.
demo: setup
	$(VENV)/bin/latentvla demo --out out/demo

test: setup
	$(VPY) -m pytest test

setup: $(VENV)/.interfaces.stamp $(VENV)/.tf2_msgs.stamp

$(VENV)/.requirements.stamp: requirements.txt constraints.txt
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# Generate the rosidl interfaces with the same CMakeLists.txt colcon uses,
# installing into the venv. Symlink install (as colcon --symlink-install):
# edits to the Python sources are live without reinstalling.
$(VENV)/.interfaces.stamp: $(VENV)/.requirements.stamp $(INSTALL_INPUTS)
	cmake -S . -B $(BUILD_DIR) -Wno-dev --log-level=WARNING \
		-DCMAKE_INSTALL_PREFIX=$(abspath $(VENV)) \
		-DCMAKE_PREFIX_PATH=$(abspath $(VENV)) \
		-DPython3_EXECUTABLE=$(abspath $(VPY)) \
		-DAMENT_CMAKE_SYMLINK_INSTALL=ON \
		-DBUILD_TESTING=OFF
	cmake --build $(BUILD_DIR) -j 2 -- --no-print-directory
	# From inside the build dir: ament's symlink install writes its manifest to the cwd.
	cd $(BUILD_DIR) && cmake --install . > /dev/null
	touch $@

# /tf needs tf2_msgs, which has no PyPI wheel: build the stand-in (TFMessage
# only, same definition) into the venv unless a real tf2_msgs is importable.
$(VENV)/.tf2_msgs.stamp: $(VENV)/.requirements.stamp $(wildcard cmake/tf2_msgs_standin/*) cmake/tf2_msgs_standin/msg/TFMessage.msg
	if ! $(VPY) -c "import tf2_msgs.msg" 2>/dev/null; then \
		cmake -S cmake/tf2_msgs_standin -B build/tf2_msgs -Wno-dev --log-level=WARNING \
			-DCMAKE_INSTALL_PREFIX=$(abspath $(VENV)) -DCMAKE_PREFIX_PATH=$(abspath $(VENV)) \
			-DPython3_EXECUTABLE=$(abspath $(VPY)) -DBUILD_TESTING=OFF && \
		cmake --build build/tf2_msgs -j 2 -- --no-print-directory && \
		cmake --install build/tf2_msgs > /dev/null; \
	fi
	touch $@

# Reproduce the shipped models: 12 simulated minutes of varied expert drives
# (perturbation episodes, spread of speeds and traffic; seed 1) to train on, 3
# held-out minutes (seed 2) to watch training, and fresh drives of seeds never used
# in training (5 and 6) for the shipped metrics. Chain: LAM -> label -> teacher.
TRAIN_DIR := out/train
LAM := lam_v2.0
TEACHER := teacher_v1.0
train: setup
	rm -rf $(TRAIN_DIR)
	$(VENV)/bin/latentvla record --scenario all --minutes 12 --seed 1 --out $(TRAIN_DIR)/train_bags
	$(VENV)/bin/latentvla record --scenario all --minutes 3 --seed 2 --out $(TRAIN_DIR)/heldout_bags
	$(VENV)/bin/latentvla dataset $(TRAIN_DIR)/train_bags --val $(TRAIN_DIR)/heldout_bags --out $(TRAIN_DIR)/cache
	$(VENV)/bin/latentvla train lam --data $(TRAIN_DIR)/cache --out $(TRAIN_DIR)/lam
	$(VENV)/bin/latentvla record --scenario all --minutes 3 --seed 5 --out $(TRAIN_DIR)/fresh_bags
	$(VENV)/bin/latentvla record --scenario all --minutes 3 --seed 6 --out $(TRAIN_DIR)/fresh_bags
	$(VENV)/bin/latentvla eval lam --model $(TRAIN_DIR)/lam/$(LAM) --data $(TRAIN_DIR)/fresh_bags \
		--json $(TRAIN_DIR)/lam/$(LAM)_metrics.json
	cp $(TRAIN_DIR)/lam/$(LAM).safetensors $(TRAIN_DIR)/lam/$(LAM).json $(TRAIN_DIR)/lam/$(LAM)_gloss.json models/
	cp $(TRAIN_DIR)/lam/$(LAM)_metrics.json models/$(LAM)_metrics.json
	cp $(TRAIN_DIR)/lam/$(LAM)_metrics.png models/$(LAM)_codes.png
	cp $(TRAIN_DIR)/lam/metrics.jsonl models/$(LAM)_training_log.jsonl
	$(VENV)/bin/latentvla label --data $(TRAIN_DIR)/cache --model $(TRAIN_DIR)/lam/$(LAM)
	$(VENV)/bin/latentvla train teacher --data $(TRAIN_DIR)/cache --out $(TRAIN_DIR)/teacher
	$(VENV)/bin/latentvla eval teacher --model $(TRAIN_DIR)/teacher/$(TEACHER) --lam $(TRAIN_DIR)/lam/$(LAM) \
		--data $(TRAIN_DIR)/fresh_bags --json $(TRAIN_DIR)/teacher/$(TEACHER)_metrics.json
	rm -rf models/$(TEACHER)
	cp -r $(TRAIN_DIR)/teacher/$(TEACHER) models/
	cp $(TRAIN_DIR)/teacher/$(TEACHER)_metrics.json models/
	cp $(TRAIN_DIR)/teacher/metrics.jsonl models/$(TEACHER)_training_log.jsonl

# What `colcon build` does in a ROS 2 Jazzy workspace, here against the pip ROS.
colcon-build: setup
	$(VPY) -m pytest test/test_colcon_build.py

clean:
	rm -rf $(VENV) build install log
