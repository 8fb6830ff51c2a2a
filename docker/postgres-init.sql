create database propeller_test;
