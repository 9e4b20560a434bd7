"""Kit hardware: camera, buttons, LEDs and buzzer, each with a real backend and a simulated one."""
