"""The MotionFollower network: 3D U-Net with motion modules, PoCtr, ReCtr; presets; weights."""
