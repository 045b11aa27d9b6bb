//! Vulkan compute backend for weft.
//!
//! Not implemented yet: the Vulkan issue fills this crate (vulkano device, GLSL compute
//! shaders compiled to committed SPIR-V, loader opened at run time). It exists now so the
//! workspace layout and the dependency direction (`weft-vulkan` -> `weft`) hold from day one.
