Console.WriteLine("matq");
