// Exists so that CMake has a translation unit to build the precompiled header with.
