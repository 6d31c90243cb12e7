include $(sort $(wildcard $(BR2_EXTERNAL_TINYVR_PATH)/package/*/*.mk))
