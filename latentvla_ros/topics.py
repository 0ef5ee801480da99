"""Default topic names (Autoware-style), in one place. Nodes remap them from launch files;
the dataset builder takes them as options, so a team's own bag names work too."""

CAMERA_IMAGE = "/sensing/camera/front/image_raw"
CAMERA_IMAGE_COMPRESSED = "/sensing/camera/front/image_raw/compressed"
CAMERA_INFO = "/sensing/camera/front/camera_info"
ODOMETRY = "/localization/kinematic_state"
DRIVING_COMMAND = "/planning/driving_command"
TRAJECTORY = "/planning/trajectory"
TF = "/tf"
TF_STATIC = "/tf_static"
CLOCK = "/clock"
GROUND_TRUTH_AGENTS = "/simulation/ground_truth/agents"
EPISODE = "/simulation/episode"
