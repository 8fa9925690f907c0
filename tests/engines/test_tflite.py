

def test_custom_op_in_names_the_op_a_load_error_reports():
    from kit.engines.tflite import custom_op_in

    message = ("Encountered unresolved custom op: Landmarks2TransformMatrix.\nSee instructions: "
               "https://www.tensorflow.org/lite/guide/ops_custom Node number 192 (Landmarks2TransformMatrix) failed")
    assert custom_op_in(message) == "Landmarks2TransformMatrix"
    assert custom_op_in("Didn't find op for builtin opcode 'CONV_2D' version '6'") == ""
