//! /auth
